/**
 * Verifying Formstate's outbound webhooks (spend alerts) in a receiver.
 *
 * ```ts
 * import { constructWebhookEvent } from "formstate/client/node";
 * // body: the raw request body, exactly as received (not re-serialized JSON)
 * const event = constructWebhookEvent(body, req.headers["formstate-signature"], process.env.ALERT_SECRET!);
 * if (await seenBefore(event.id)) return; // a redelivery: answer 2xx, act once
 * ```
 *
 * A webhook is genuine when its `Formstate-Signature` header
 * (`t={unix seconds},v1={hex}`) carries an HMAC-SHA256 of `{t}.{body}` under
 * the alert's signing secret, and fresh when `t` is within the tolerance
 * (default 5 minutes) of the receiver's clock: an old copy sent again (a
 * replay) is refused even with a valid MAC. Within the tolerance, redeliveries
 * share the event `id`: act once per id.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** Why a webhook was refused. */
export class WebhookSignatureError extends Error {
  override name = "WebhookSignatureError";
}

export interface VerifyWebhookOptions {
  /** How far the signed time may be from now, seconds; default 300. */
  toleranceSec?: number;
  /** The receiver's clock, unix seconds; default now. */
  nowSec?: number;
}

/** A spend alert's webhook body. */
export interface SpendAlertEvent {
  /** The event id: the same on every redelivery. */
  id: string;
  type: "spend_alert.triggered";
  /** Unix seconds when the alert fired. */
  created: number;
  data: {
    spend_alert: string;
    account: string;
    api_key?: string;
    /** `2026-12` (a month) or `cap:{micros}` (a key's spend cap). */
    period: string;
    threshold_micros?: number;
    threshold_percent?: number;
    /** What was spent when it fired, micro-USD. */
    spent_micros: number;
    /** What a percentage is of (the month's credits, or the key's cap), micro-USD. */
    base_micros?: number;
  };
}

/** Throws WebhookSignatureError unless `header` is a valid, fresh signature of `body` under `secret`. */
export function verifyWebhookSignature(body: string | Uint8Array, header: string | null | undefined, secret: string, options: VerifyWebhookOptions = {}): void {
  if (!header) throw new WebhookSignatureError("missing Formstate-Signature header");
  let t: number | undefined;
  const macs: string[] = [];
  for (const part of header.split(",")) {
    const [k, v] = part.trim().split("=", 2);
    if (k === "t" && /^[0-9]{1,12}$/.test(v ?? "")) t = Number(v);
    else if (k === "v1" && /^[0-9a-f]{64}$/.test(v ?? "")) macs.push(v);
  }
  if (t === undefined || macs.length === 0) throw new WebhookSignatureError("malformed Formstate-Signature header");
  const tolerance = options.toleranceSec ?? 300;
  const now = options.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > tolerance) throw new WebhookSignatureError(`the signature's time is ${now - t} s from now, outside the ${tolerance} s tolerance (a replay or a skewed clock)`);
  const text = typeof body === "string" ? body : Buffer.from(body).toString("utf8");
  const expected = createHmac("sha256", secret).update(`${t}.${text}`).digest();
  if (!macs.some((m) => timingSafeEqual(Buffer.from(m, "hex"), expected))) throw new WebhookSignatureError("the signature does not match the body");
}

/** Verifies a spend-alert webhook and returns its parsed body. */
export function constructWebhookEvent(body: string | Uint8Array, header: string | null | undefined, secret: string, options: VerifyWebhookOptions = {}): SpendAlertEvent {
  verifyWebhookSignature(body, header, secret, options);
  return JSON.parse(typeof body === "string" ? body : Buffer.from(body).toString("utf8")) as SpendAlertEvent;
}
