import type http from "node:http";
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import { arrival } from "../cluster/state-cache.js";
import { normalizeIp } from "../keys/ip-allowlist.js";
import { callSeenKey, requestIdKey, requestIdOf } from "./request-id.js";

/** The caller's address as the socket sees it (proxies are not trusted). */
export const clientIpKey = createContextKey<string>("", { description: "client ip" });

/**
 * When the request arrived (`arrival()`, src/cluster/state-cache.ts): the exact caches serve it after
 * any check of other processes' commits that ran since. Unset (undefined): every read checks afresh.
 */
export const arrivalKey = createContextKey<number | undefined>(undefined, { description: "arrival stamp" });

/**
 * Context values for a request: the peer address, the request id, whether the interceptors saw it, and
 * its arrival stamp (taken here, once its headers are read: before anything of it is served).
 */
export function requestContextValues(req: { socket?: { remoteAddress?: string } | null; headers?: http.IncomingHttpHeaders }): ContextValues {
  return createContextValues()
    .set(clientIpKey, normalizeIp(req.socket?.remoteAddress ?? ""))
    .set(requestIdKey, requestIdOf(req.headers?.["x-request-id"]))
    .set(callSeenKey, { seen: false })
    .set(arrivalKey, arrival());
}
