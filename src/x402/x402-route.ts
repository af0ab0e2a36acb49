/**
 * The plain HTTP side of x402 top-ups, `POST /x402/topup/{project}?amount={micro-USD}`:
 * without `PAYMENT-SIGNATURE` it answers 402 with the x402 v2 challenge in
 * `PAYMENT-REQUIRED`; with one it verifies, settles and credits, and answers
 * 200 with `PAYMENT-RESPONSE`. The caller authenticates as for any RPC
 * (an API key or a JWT of the project): a top-up goes only to the caller's
 * own project, and another project's name is answered as not found.
 */
import type http from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal } from "../auth/principal.js";
import { normalizeIp } from "../keys/ip-allowlist.js";
import { requireLiveMoney } from "../ledger/sandbox.js";
import { accountName } from "../names/names.js";
import { PaymentRefused, TOPUP_PATH, type X402Rail } from "./x402-topups.js";
import { PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, encodeHeader } from "./x402-wire.js";

type Req = http.IncomingMessage;
type Res = http.ServerResponse;

export interface TopUpRouteDeps {
  /** The rail; undefined when x402 is not configured (the route answers 404 then). */
  rail?: X402Rail;
  /** Resolves the request's credential as the RPC interceptor does; throws UNAUTHENTICATED. */
  authenticate(headers: Headers, clientIp: string): Promise<Principal | undefined>;
}

/** Whether a path belongs to the top-up route. */
export const isTopUpPath = (path: string) => path.startsWith(TOPUP_PATH);

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.FailedPrecondition]: 412,
  [Code.ResourceExhausted]: 429,
  [Code.Unavailable]: 503,
};

function send(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...headers });
  res.end(text);
}

function sendError(res: Res, err: ConnectError): void {
  const status = HTTP_STATUS[err.code] ?? 500;
  send(res, status, { code: Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase(), message: status === 500 ? "internal error" : err.rawMessage });
}

function headersOf(req: Req): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith(":") || v === undefined) continue;
    h.set(k, Array.isArray(v) ? v.join(", ") : v);
  }
  return h;
}

/** Serves one top-up request. */
export async function serveTopUp(deps: TopUpRouteDeps, req: Req, res: Res): Promise<void> {
  req.resume(); // the body carries nothing; drain it
  const rail = deps.rail;
  if (!rail) return send(res, 404, { code: "not_found", message: "x402 top-ups are not enabled on this server" });
  if (req.method !== "POST") return send(res, 405, { code: "invalid_argument", message: "use POST" }, { allow: "POST" });
  const url = new URL(req.url ?? "/", "http://localhost");
  const projectId = decodeURIComponent(url.pathname.slice(TOPUP_PATH.length));
  try {
    const headers = headersOf(req);
    const principal = await deps.authenticate(headers, normalizeIp(req.socket.remoteAddress ?? ""));
    if (!principal || principal.kind === "anonymous") {
      return send(res, 401, { code: "unauthenticated", message: "missing credential: send Authorization: Bearer <token or API key>" });
    }
    // Another project's top-up reads as not found: no oracle for which projects exist.
    if (principal.projectId !== projectId) throw new ConnectError(`account "${accountName(projectId)}" not found`, Code.NotFound);
    // x402 moves real money: never in test mode (a test key, a test-mode project).
    requireLiveMoney(principal, "top up with a real x402 payment");
    const amount = rail.parseAmount(url.searchParams.get("amount"));
    const origin = `${req.headers["x-forwarded-proto"] === "https" ? "https" : "http"}://${req.headers.host ?? req.headers[":authority"] ?? "localhost"}`;
    const signature = headers.get(PAYMENT_SIGNATURE);
    if (!signature) {
      await rail.requireAccount(projectId);
      const offer = rail.offer(projectId, amount, origin);
      return send(res, 402, { code: "payment_required", message: offer.error, amountMicros: amount }, { [PAYMENT_REQUIRED]: encodeHeader(offer) });
    }
    try {
      const done = await rail.pay(projectId, amount, signature, principal.subject);
      return send(
        res,
        200,
        { amountMicros: done.amountMicros, balanceMicros: done.balanceMicros, creditTransaction: done.creditTransaction, transaction: done.settlement.transaction, network: done.settlement.network },
        { [PAYMENT_RESPONSE]: encodeHeader(done.settlement) },
      );
    } catch (err) {
      if (!(err instanceof PaymentRefused)) throw err;
      const offer = rail.offer(projectId, amount, origin, err.message);
      const extra: Record<string, string> = { [PAYMENT_REQUIRED]: encodeHeader(offer) };
      if (err.settlement) extra[PAYMENT_RESPONSE] = encodeHeader(err.settlement);
      return send(res, 402, { code: "payment_required", message: err.message, reason: err.reason }, extra);
    }
  } catch (err) {
    if (err instanceof ConnectError) return sendError(res, err);
    send(res, 500, { code: "internal", message: "internal error" });
  }
}
