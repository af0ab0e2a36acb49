/**
 * The Node client: Connect's gRPC transport over HTTP/2, typed clients for
 * every service, and scoped task keys revoked when their scope ends:
 *
 *   await using task = await client.scopedKey({ ttlMs: 60_000, spendCapMicros: 1_000_000n, methods: [...] });
 *   await task.client.usage.recordUsage(...);
 *
 * A gateway that buffers usage sends it with one call per 1,000 usages:
 *
 *   const outcomes = await client.recordUsageBatch("accounts/p", buffered); // one per usage, in order
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type BatchUsageOutcome, type Credentials, type FormstateClients, authInterceptor, clientsFor, recordUsageBatch } from "./common.js";
import { accountName } from "../names/names.js";

export * from "./common.js";
export * from "./webhooks.js";

// Node 20 has the symbol; older runtimes get the well-known registry symbol TypeScript's downlevel uses.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for("Symbol.asyncDispose");

/** `project` is needed only for scopedKey (it names the account the key belongs to). */
export type FormstateClientOptions = { baseUrl: string; project?: string } & Credentials;

export interface ScopedKeyOptions {
  ttlMs: number;
  spendCapMicros: bigint;
  /** Full method paths, `/formstate.v1.UsageService/RecordUsage`. */
  methods: string[];
  models?: string[];
  /** The standard key to mint from; default: the caller's key (or user). */
  parentKey?: string;
  displayName?: string;
}

/** A scoped key and a client that uses it; revoked when disposed. */
export interface ScopedKey extends AsyncDisposable {
  name: string;
  secret: string;
  expireTime: Date;
  client: FormstateClients;
  revoke(): Promise<void>;
}

export interface FormstateClient extends FormstateClients {
  /** Mints a short-lived scoped key for one task; use with `await using`. */
  scopedKey(options: ScopedKeyOptions): Promise<ScopedKey>;
  /** Records usages of `parent` with BatchRecordUsage (1,000 per call); one outcome per usage, in order (see common.ts). */
  recordUsageBatch(parent: string, usages: Parameters<typeof recordUsageBatch>[2]): Promise<BatchUsageOutcome[]>;
}

export function createFormstateClient(options: FormstateClientOptions): FormstateClient {
  const { baseUrl, project, ...credentials } = options;
  const clients = clientsFor(createGrpcTransport({ baseUrl, interceptors: [authInterceptor(credentials as Credentials)] }));
  return {
    ...clients,
    recordUsageBatch: (parent, usages) => recordUsageBatch(clients.usage, parent, usages),
    async scopedKey(o) {
      const projectId = project;
      if (!projectId) throw new Error("createFormstateClient: pass `project` to mint scoped keys");
      const res = await clients.apiKeys.createScopedKey({
        parent: accountName(projectId),
        parentKey: o.parentKey ?? "",
        ttl: durationFromMs(o.ttlMs),
        spendCapMicros: o.spendCapMicros,
        allowedMethods: o.methods,
        allowedModels: o.models ?? [],
        displayName: o.displayName ?? "",
      });
      const name = res.apiKey!.name;
      let revoked = false;
      const revoke = async () => {
        if (revoked) return;
        revoked = true;
        await clients.apiKeys.revokeApiKey({ name, reason: "scope ended" });
      };
      return {
        name,
        secret: res.secret,
        expireTime: new Date(Number(res.expireTime?.seconds ?? 0n) * 1000),
        client: clientsFor(createGrpcTransport({ baseUrl, interceptors: [authInterceptor({ apiKey: res.secret })] })),
        revoke,
        [Symbol.asyncDispose]: revoke,
      };
    },
  };
}
