import type http from "node:http";
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import { normalizeIp } from "../keys/ip-allowlist.js";
import { callSeenKey, requestIdKey, requestIdOf } from "./request-id.js";

/** The caller's address as the socket sees it (proxies are not trusted). */
export const clientIpKey = createContextKey<string>("", { description: "client ip" });

/** Context values for a request: the peer address, the request id, and whether the interceptors saw it. */
export function requestContextValues(req: { socket?: { remoteAddress?: string } | null; headers?: http.IncomingHttpHeaders }): ContextValues {
  return createContextValues()
    .set(clientIpKey, normalizeIp(req.socket?.remoteAddress ?? ""))
    .set(requestIdKey, requestIdOf(req.headers?.["x-request-id"]))
    .set(callSeenKey, { seen: false });
}
