/**
 * HTTP 402 for payment-required answers over plain HTTP. The Connect protocol
 * maps FAILED_PRECONDITION to 400; a payment-required error (marked by its
 * `formstate-payment-required` header, see src/billing/payment-required.ts)
 * is sent with 402 instead. Connect clients read the code from the JSON error
 * body, so they still see failed_precondition with the same details; curl
 * and HTTP gateways see 402. gRPC and gRPC-Web answer 200 with the status in
 * trailers and are left alone.
 */
import type http from "node:http";
import { PAYMENT_REQUIRED_HEADER } from "../billing/payment-required.js";

/** What this needs of Node's HTTP/1.1 and HTTP/2 compatibility responses. */
type Res = { writeHead(status: number, ...rest: never[]): unknown };

/** Whether a request speaks gRPC or gRPC-Web (their HTTP status is always 200). */
function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.startsWith("application/grpc");
}

/** Rewrites a 400 carrying the payment-required marker to 402, for this response only. */
export function paymentRequiredAs402(req: { headers: http.IncomingHttpHeaders }, res: Res): void {
  if (isGrpc(req.headers["content-type"])) return;
  const writeHead = res.writeHead as (this: Res, status: number, ...rest: unknown[]) => unknown;
  (res as { writeHead: unknown }).writeHead = function (this: Res, status: number, ...rest: unknown[]) {
    const headers = rest[rest.length - 1];
    if (status === 400 && headers && typeof headers === "object" && PAYMENT_REQUIRED_HEADER in headers) status = 402;
    return writeHead.call(this, status, ...rest);
  };
}
