/**
 * The Stripe SDK, configured once, and how its failures read: which ones a
 * retry may cure (network, timeouts, 5xx, 429) and which it cannot (Stripe
 * refused the request), and what a caller of an RPC is told.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import Stripe from "stripe";
import type { StripeConfig } from "../config.js";
import type { Logger } from "../logger.js";

export type { Stripe };

/** Interactive calls let the SDK retry twice (it adds idempotency keys to POSTs); the meter sender retries itself. */
const SDK_RETRIES = 2;

/** The SDK pointed at Stripe, or at STRIPE_API_HOST/PORT/PROTOCOL (a local fake in tests). */
export function createStripeClient(config: StripeConfig & { secretKey: string }): Stripe {
  return new Stripe(config.secretKey, {
    host: config.apiHost,
    port: config.apiPort,
    protocol: config.apiProtocol,
    timeout: config.timeoutMs,
    maxNetworkRetries: SDK_RETRIES,
    telemetry: false,
    appInfo: { name: "formstate" },
  });
}

function stripeError(err: unknown): Stripe.errors.StripeError | undefined {
  return err instanceof Stripe.errors.StripeError ? err : undefined;
}

/** The id of an expandable Stripe field (an id, or the object itself). */
export function idOf(v: string | { id: string } | null | undefined): string | undefined {
  return v === null || v === undefined ? undefined : typeof v === "string" ? v : v.id;
}

/** An error the SDK raised (Stripe answered with an error, or could not be reached). */
export function isStripeError(err: unknown): err is Stripe.errors.StripeError {
  return stripeError(err) !== undefined;
}

/** Stripe answered 404 for the object asked for. */
export function isMissing(err: unknown): boolean {
  const e = stripeError(err);
  return e?.statusCode === 404 || e?.code === "resource_missing";
}

/**
 * Whether the same request may succeed later: no answer (connection, timeout),
 * a server error, rate limiting, an idempotency conflict, or credentials being
 * fixed (401/403). Anything else is Stripe refusing the request as it is.
 */
export function isRetryable(err: unknown): boolean {
  const e = stripeError(err);
  if (!e) return true;
  if (e instanceof Stripe.errors.StripeConnectionError) return true;
  const status = e.statusCode ?? 0;
  return status === 0 || status >= 500 || [401, 403, 409, 429].includes(status);
}

/** A short, secret-free description for logs and the outbox. */
export function describe(err: unknown): string {
  const e = stripeError(err);
  if (!e) return err instanceof Error ? err.message : String(err);
  return `${e.type}${e.statusCode ? ` ${e.statusCode}` : ""}: ${e.message}`;
}

/** Runs a call that reaches Stripe during an RPC; Stripe's failures become UNAVAILABLE or INTERNAL (and a log line). */
export async function viaStripe<T>(log: Logger, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!isStripeError(err)) throw err;
    log.warn({ reason: describe(err) }, `could not ${what} with Stripe`);
    throw toConnectError(err);
  }
}

/** A Stripe failure during an RPC: UNAVAILABLE when a retry may help, INTERNAL otherwise. */
export function toConnectError(err: Stripe.errors.StripeError): ConnectError {
  if (isRetryable(err)) return new ConnectError("Stripe is not reachable right now; try again shortly", Code.Unavailable);
  return new ConnectError("Stripe refused the request; see the server log", Code.Internal);
}
