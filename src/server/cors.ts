/**
 * CORS for browsers (Connect-Web, gRPC-Web). Origins are configured;
 * `localhost` admits any http(s) origin on localhost or 127.0.0.1, the
 * development default.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

export const RATE_LIMIT_HEADERS = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"];

const allowHeaders = [...connectCors.allowedHeaders, "Authorization", "X-API-Key", "X-Request-Id"].join(", ");
const exposeHeaders = [...connectCors.exposedHeaders, ...RATE_LIMIT_HEADERS, "x-request-id", "x-credit-balance-micros"].join(", ");
const LOCALHOST = /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/;

export function originAllowed(origin: string, allowed: readonly string[]): boolean {
  return allowed.some((a) => a === "*" || a === origin || (a === "localhost" && LOCALHOST.test(origin)));
}

type Req = Pick<http.IncomingMessage | http2.Http2ServerRequest, "headers" | "method">;
type Res = { setHeader(name: string, value: string): unknown; writeHead(status: number): { end(): void } };

/**
 * Sets CORS headers for an allowed origin; answers preflights itself.
 * Returns true when the request has been fully answered.
 */
export function applyCors(req: Req, res: Res, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (typeof origin !== "string" || !originAllowed(origin, allowed)) {
    if (req.method === "OPTIONS" && origin) {
      res.writeHead(403).end();
      return true;
    }
    return false;
  }
  res.setHeader("Access-Control-Allow-Origin", origin);
  res.setHeader("Vary", "Origin");
  res.setHeader("Access-Control-Expose-Headers", exposeHeaders);
  if (req.method === "OPTIONS") {
    res.setHeader("Access-Control-Allow-Methods", connectCors.allowedMethods.join(", "));
    res.setHeader("Access-Control-Allow-Headers", allowHeaders);
    res.setHeader("Access-Control-Max-Age", "7200");
    res.writeHead(204).end();
    return true;
  }
  return false;
}
