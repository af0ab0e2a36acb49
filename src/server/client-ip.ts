import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import { normalizeIp } from "../keys/ip-allowlist.js";

/** The caller's address as the socket sees it (proxies are not trusted). */
export const clientIpKey = createContextKey<string>("", { description: "client ip" });

/** Context values for a request: the peer address. */
export function requestContextValues(req: { socket?: { remoteAddress?: string } | null }): ContextValues {
  return createContextValues().set(clientIpKey, normalizeIp(req.socket?.remoteAddress ?? ""));
}
