/**
 * Per-request values set when a request arrives, before Connect or the fast
 * path parse anything, so a call that fails early still has its id.
 */
import { randomUUID } from "node:crypto";
import { createContextKey } from "@connectrpc/connect";

export const requestIdKey = createContextKey<string>("", { description: "request id" });

/** Set once the interceptors see the call (they log it); a call failed before that is logged by the adapter. */
export const callSeenKey = createContextKey<{ seen: boolean }>({ seen: true }, { description: "call reached the interceptors" });

const SAFE_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** The caller's `x-request-id` when it is a safe token, else a new one. */
export function requestIdOf(given: string | string[] | undefined): string {
  return typeof given === "string" && SAFE_ID.test(given) ? given : randomUUID();
}
