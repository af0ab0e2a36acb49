/**
 * What the Node and browser clients share: typed clients for the six
 * services, the auth interceptor, and helpers that read our limit headers and
 * typed error details.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type CallOptions, type Client, Code, ConnectError, type Interceptor, type Transport, createClient } from "@connectrpc/connect";
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
import { type RecordUsageRequestSchema, type RecordUsageResponse, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";

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

/** Most usages BatchRecordUsage takes in one call. */
export const MAX_BATCH_USAGES = 1000;

/** One usage's outcome in recordUsageBatch: its response, or its own error (with its typed details). */
export type BatchUsageOutcome = { requestId: string; response: RecordUsageResponse; error?: undefined } | { requestId: string; response?: undefined; error: ConnectError };

/**
 * Records usages with BatchRecordUsage, up to 1,000 per call (more are sent
 * in order, 1,000 at a time), and answers one outcome per usage, in order.
 * An item's error is a ConnectError with the code, message and details the
 * single RecordUsage would have thrown (so `paymentRequired(err)` works on
 * it); an error of a whole call (network, auth) is thrown. Each usage needs
 * its own request_id: a retry of the same usages charges nothing twice.
 */
export async function recordUsageBatch(
  usage: Client<typeof UsageService>,
  parent: string,
  usages: Omit<MessageInitShape<typeof RecordUsageRequestSchema>, "parent" | "$typeName">[],
  options?: CallOptions,
): Promise<BatchUsageOutcome[]> {
  const out: BatchUsageOutcome[] = [];
  for (let i = 0; i < usages.length; i += MAX_BATCH_USAGES) {
    const res = await usage.batchRecordUsage({ parent, requests: usages.slice(i, i + MAX_BATCH_USAGES) }, options);
    for (const r of res.results) {
      if (r.result.case === "response") out.push({ requestId: r.requestId, response: r.result.value });
      else {
        const e = r.result.value;
        const error = new ConnectError(e?.message ?? "no result", (e?.code ?? Code.Unknown) as Code);
        // Kept as incoming details (type name + bytes), exactly as a single call's error arrives, so findDetails works.
        error.details = (e?.details ?? []).map((d) => ({ type: d.typeUrl.slice(d.typeUrl.lastIndexOf("/") + 1), value: d.value }));
        out.push({ requestId: r.requestId, error });
      }
    }
  }
  return out;
}
