/**
 * The Node client: Connect's gRPC transport over HTTP/2, typed clients for
 * every service, and scoped task keys revoked when their scope ends:
 *
 *   await using task = await client.scopedKey({ ttlMs: 60_000, spendCapMicros: 1_000_000n, methods: [...] });
 *   await task.client.usage.recordUsage(...);
 *
 * Plain JavaScript on Node 20/22 has no `await using`: call `task.dispose()` in a `finally`.
 *
 * A gateway that buffers usage sends it with one call per 1,000 usages:
 *
 *   const outcomes = await client.recordUsageBatch("accounts/p", buffered); // one per usage, in order
 */
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type Credentials, type FormstateClient, createClientWith } from "./common.js";

export * from "./common.js";
export * from "./webhooks.js";

/** `project` is needed only for scopedKey (it names the account the key belongs to). */
export type FormstateClientOptions = { baseUrl: string; project?: string } & Credentials;

export function createFormstateClient(options: FormstateClientOptions): FormstateClient {
  const { baseUrl, project, ...credentials } = options;
  return createClientWith((interceptors) => createGrpcTransport({ baseUrl, interceptors }), credentials as Credentials, project);
}
