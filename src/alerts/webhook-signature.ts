/**
 * The signature of outbound webhooks, as Stripe signs its own: header
 * `Formstate-Signature: t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`.
 * The timestamp is signed with the body, so a receiver refuses old copies
 * (a replay) by the time, and forged bodies by the MAC. Receivers verify
 * with `verifyWebhookSignature` from the Node client (src/client/webhooks.ts).
 */
import { createHmac, randomBytes } from "node:crypto";

/** The header carrying the signature. */
export const SIGNATURE_HEADER = "formstate-signature";
/** The header carrying the event id (also the body's `id`), for de-duplication. */
export const EVENT_ID_HEADER = "formstate-event-id";

/** A new signing secret: `whsec_` and 256 random bits. */
export const newSigningSecret = () => `whsec_${randomBytes(32).toString("base64url")}`;

/** The hex HMAC-SHA256 of `{t}.{body}` under `secret`. */
export const webhookMac = (secret: string, t: number, body: string) => createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");

/** The Formstate-Signature value for a body sent at `t` (unix seconds). */
export const signatureHeader = (secret: string, t: number, body: string) => `t=${t},v1=${webhookMac(secret, t, body)}`;
