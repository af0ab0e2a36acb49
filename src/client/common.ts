/**
 * What the Node and browser clients share: typed clients for the six
 * services, the auth interceptor, scoped task keys, and helpers that read our
 * limit headers and typed error details. Imports only @bufbuild/protobuf,
 * @connectrpc/connect and gen/, so it ships in the @formstate/client package.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, ConnectError, type Interceptor, type Transport, createClient } from "@connectrpc/connect";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { AgentService } from "../../gen/formstate/v1/agent_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import {
  type LimitExceeded,
  LimitExceededSchema,
  LimitReason,
  type PaymentRequired,
  PaymentRequiredSchema,
  RetryInfoSchema,
  type UpgradeOption,
} from "../../gen/formstate/v1/errors_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { accountName } from "../names/names.js";

/** How the client authenticates: an API key, a fixed token, or a function that returns a fresh one. */
export type Credentials = { apiKey: string } | { token: string } | { getToken: () => string | Promise<string> } | Record<string, never>;

export interface FormstateClients {
  accounts: Client<typeof AccountService>;
  apiKeys: Client<typeof ApiKeyService>;
  usage: Client<typeof UsageService>;
  billing: Client<typeof BillingService>;
  agents: Client<typeof AgentService>;
  models: Client<typeof ModelService>;
}

/** Adds the credential to every call (Authorization: Bearer, or x-api-key for keys). */
export function authInterceptor(credentials: Credentials): Interceptor {
  return (next) => async (req) => {
    if ("apiKey" in credentials) req.header.set("x-api-key", credentials.apiKey);
    else if ("token" in credentials) req.header.set("authorization", `Bearer ${credentials.token}`);
    else if ("getToken" in credentials) req.header.set("authorization", `Bearer ${await credentials.getToken()}`);
    return next(req);
  };
}

export function clientsFor(transport: Transport): FormstateClients {
  return {
    accounts: createClient(AccountService, transport),
    apiKeys: createClient(ApiKeyService, transport),
    usage: createClient(UsageService, transport),
    billing: createClient(BillingService, transport),
    agents: createClient(AgentService, transport),
    models: createClient(ModelService, transport),
  };
}

// Runtimes without the symbol (Node 20.0-20.3, older browsers) get the well-known registry symbol that
// TypeScript's and esbuild's `await using` downlevel looks up, so disposal works either way.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for("Symbol.asyncDispose");

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

/**
 * A scoped key and a client that uses it, revoked when disposed: with
 * `await using` where the runtime or compiler supports it (Node 24+,
 * TypeScript 5.2+, esbuild), or by calling `dispose()` in a `finally`
 * (plain JavaScript on Node 20 and 22, which lack the syntax).
 */
export interface ScopedKey extends AsyncDisposable {
  name: string;
  secret: string;
  expireTime: Date;
  client: FormstateClients;
  /** Revokes the key now; later calls do nothing. */
  revoke(): Promise<void>;
  /** The same as revoke(), under the name disposal uses: `try { ... } finally { await task.dispose(); }`. */
  dispose(): Promise<void>;
}

/** Typed clients for every service, plus scoped task keys. */
export interface FormstateClient extends FormstateClients {
  /** Mints a short-lived scoped key for one task; release it with `await using` or `dispose()`. */
  scopedKey(options: ScopedKeyOptions): Promise<ScopedKey>;
}

/**
 * The client both entry points return: `transportFor` makes a transport
 * (gRPC on Node, Connect over fetch in browsers) with the given interceptors.
 * `project` names the account scoped keys belong to.
 */
export function createClientWith(transportFor: (interceptors: Interceptor[]) => Transport, credentials: Credentials, project: string | undefined): FormstateClient {
  const clients = clientsFor(transportFor([authInterceptor(credentials)]));
  return {
    ...clients,
    async scopedKey(o) {
      if (!project) throw new Error("createFormstateClient: pass `project` to mint scoped keys");
      const res = await clients.apiKeys.createScopedKey({
        parent: accountName(project),
        parentKey: o.parentKey ?? "",
        ttl: durationFromMs(o.ttlMs),
        spendCapMicros: o.spendCapMicros,
        allowedMethods: o.methods,
        allowedModels: o.models ?? [],
        displayName: o.displayName ?? "",
      });
      const name = res.apiKey!.name;
      let revoked: Promise<void> | undefined;
      const revoke = () => (revoked ??= clients.apiKeys.revokeApiKey({ name, reason: "scope ended" }).then(() => undefined));
      return {
        name,
        secret: res.secret,
        expireTime: new Date(Number(res.expireTime?.seconds ?? 0n) * 1000),
        client: clientsFor(transportFor([authInterceptor({ apiKey: res.secret })])),
        revoke,
        dispose: revoke,
        [Symbol.asyncDispose]: revoke,
      };
    },
  };
}

/** The rate-limit and credit headers of a response (pass `onHeader` in the call options to get them). */
export function readLimitHeaders(h: Headers) {
  const num = (name: string) => (h.has(name) ? Number(h.get(name)) : undefined);
  return {
    limit: num("x-ratelimit-limit"),
    remaining: num("x-ratelimit-remaining"),
    resetSeconds: num("x-ratelimit-reset"),
    creditBalanceMicros: h.has("x-credit-balance-micros") ? BigInt(h.get("x-credit-balance-micros")!) : undefined,
  };
}

/** What a refused call says a client can do: wait (rate limits) or upgrade / buy credits (quotas). */
export interface LimitAdvice {
  reason: LimitReason;
  retryDelayMs?: number;
  upgradeOptions: UpgradeOption[];
  creditsNeededMicros: bigint;
  detail?: LimitExceeded;
  /** Set when money, not speed, refused the call (FAILED_PRECONDITION, HTTP 402): how much to add and where to pay. */
  payment?: PaymentRequired;
}

/**
 * The PaymentRequired detail of a call refused for money (credits, a key's
 * spend cap, a wallet budget); undefined for any other error, rate limits
 * included (those are RESOURCE_EXHAUSTED: wait and retry, do not pay).
 */
export function paymentRequired(err: unknown): PaymentRequired | undefined {
  return ConnectError.from(err).findDetails(PaymentRequiredSchema)[0];
}

/** Decodes our typed error details; undefined for errors that carry none. */
export function limitAdvice(err: unknown): LimitAdvice | undefined {
  const ce = ConnectError.from(err);
  const [limit] = ce.findDetails(LimitExceededSchema);
  const [retry] = ce.findDetails(RetryInfoSchema);
  const [payment] = ce.findDetails(PaymentRequiredSchema);
  if (!limit && !retry && !payment) return undefined;
  return {
    reason: limit?.reason ?? payment?.reason ?? LimitReason.RATE_LIMITED,
    retryDelayMs: retry?.retryDelay ? Number(retry.retryDelay.seconds) * 1000 + Math.floor(retry.retryDelay.nanos / 1e6) : undefined,
    upgradeOptions: limit?.upgradeOptions ?? [],
    creditsNeededMicros: limit?.creditsNeededMicros ?? payment?.amountMicros ?? 0n,
    detail: limit,
    payment,
  };
}
