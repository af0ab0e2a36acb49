/** ApiKeyService over the wire: translates messages to the key domain and back. */
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import {
  type ApiKey,
  ApiKeyEventSchema,
  ApiKeyEventType,
  ApiKeyKind,
  ApiKeySchema,
  type ApiKeyService,
  ApiKeyStatus,
  KeyEnvironment,
  VerifyResult,
} from "../../gen/formstate/v1/api_key_service_pb.js";
import { ActorSchema } from "../../gen/formstate/v1/common_pb.js";
import { callerOf } from "../auth/principal.js";
import { arrivalKey, clientIpKey } from "../server/client-ip.js";
import { fieldMaskPaths } from "../wire/field-mask.js";
import { durationMs } from "../wire/duration.js";
import type { ApiKeyEventRow, ApiKeyRow } from "./api-key-repository.js";
import { type ApiKeys, type KeySettings, type KeyStatus, keyName, listOf, scopesOf, statusOf } from "./api-keys.js";
import type { KeyEnvironment as Env } from "./key-format.js";
import type { RateLimiter } from "../limits/rate-limiter.js";
import type { Plans } from "../plans/plans.js";

const statusToWire: Record<KeyStatus, ApiKeyStatus> = {
  active: ApiKeyStatus.ACTIVE,
  revoked: ApiKeyStatus.REVOKED,
  rotated: ApiKeyStatus.ROTATED,
  expired: ApiKeyStatus.EXPIRED,
};
const statusFromWire: Partial<Record<ApiKeyStatus, KeyStatus>> = {
  [ApiKeyStatus.ACTIVE]: "active",
  [ApiKeyStatus.REVOKED]: "revoked",
  [ApiKeyStatus.ROTATED]: "rotated",
  [ApiKeyStatus.EXPIRED]: "expired",
};
const eventTypes: Record<string, ApiKeyEventType> = {
  created: ApiKeyEventType.CREATED,
  updated: ApiKeyEventType.UPDATED,
  rotated: ApiKeyEventType.ROTATED,
  revoked: ApiKeyEventType.REVOKED,
  used_from_new_ip: ApiKeyEventType.USED_FROM_NEW_IP,
  rate_limited: ApiKeyEventType.RATE_LIMITED,
  expired: ApiKeyEventType.EXPIRED,
  scoped_key_created: ApiKeyEventType.SCOPED_KEY_CREATED,
};
const eventTypeNames = new Map(Object.entries(eventTypes).map(([k, v]) => [v, k]));

const ms = (t: number | null) => (t === null ? undefined : timestampFromMs(t));

function actor(kind: string, id: string) {
  return create(ActorSchema, {
    kind: kind === "user" ? { case: "userId", value: id } : kind === "api_key" ? { case: "apiKey", value: id } : { case: "system", value: id },
  });
}

/** Key metadata for the wire; the secret hash never leaves the domain. */
export function toApiKey(row: ApiKeyRow, now: number): ApiKey {
  return create(ApiKeySchema, {
    name: keyName(row.project_id, row.key_id),
    keyId: row.key_id,
    displayName: row.display_name,
    start: `fs_${row.environment}_${row.key_id}`,
    scopes: scopesOf(row),
    status: statusToWire[statusOf(row, now)],
    environment: row.environment === "test" ? KeyEnvironment.TEST : KeyEnvironment.LIVE,
    createTime: timestampFromMs(row.create_time),
    expireTime: ms(row.expire_time),
    lastUsedTime: ms(row.last_used_time),
    revokeTime: ms(row.revoke_time),
    rateLimit: row.rate_limit_rps === null ? undefined : { requestsPerSecond: row.rate_limit_rps, burst: row.rate_limit_burst ?? 0 },
    spendCapMicros: row.spend_cap_micros === null ? undefined : BigInt(row.spend_cap_micros),
    spentMicros: BigInt(row.spent_micros),
    allowedCidrs: listOf(row.allowed_cidrs),
    allowedModels: listOf(row.allowed_models),
    parentKey: row.parent_key_id ? keyName(row.project_id, row.parent_key_id) : "",
    createdBy: actor(row.created_by_kind, row.created_by),
    kind: row.kind === "scoped" ? ApiKeyKind.SCOPED : ApiKeyKind.STANDARD,
    allowedMethods: listOf(row.allowed_methods),
    replacedBy: row.replaced_by ? keyName(row.project_id, row.replaced_by) : "",
    updateTime: timestampFromMs(row.update_time),
  });
}

function toEvent(row: ApiKeyEventRow) {
  return create(ApiKeyEventSchema, {
    name: `${keyName(row.project_id, row.key_id)}/events/${row.event_id}`,
    apiKey: keyName(row.project_id, row.key_id),
    type: eventTypes[row.type] ?? ApiKeyEventType.UNSPECIFIED,
    actor: actor(row.actor_kind, row.actor),
    actorIp: row.actor_ip,
    createTime: timestampFromMs(row.create_time),
    details: JSON.parse(row.details) as Record<string, string>,
  });
}

const tsMs = (t: Timestamp | undefined) => (t ? timestampDate(t).getTime() : null);

function settingsOf(k: ApiKey): KeySettings {
  return {
    displayName: k.displayName,
    scopes: k.scopes,
    environment: k.environment === KeyEnvironment.UNSPECIFIED ? undefined : ((k.environment === KeyEnvironment.TEST ? "test" : "live") as Env),
    expireTime: tsMs(k.expireTime),
    rateLimit: k.rateLimit ? { requestsPerSecond: k.rateLimit.requestsPerSecond, burst: k.rateLimit.burst || k.rateLimit.requestsPerSecond } : null,
    spendCapMicros: k.spendCapMicros === undefined ? null : Number(k.spendCapMicros),
    allowedCidrs: k.allowedCidrs,
    allowedModels: k.allowedModels,
  };
}

const updatable = ["display_name", "scopes", "expire_time", "rate_limit", "spend_cap_micros", "allowed_cidrs", "allowed_models"] as const;

export interface ApiKeyServiceDeps {
  keys: ApiKeys;
  limiter: RateLimiter;
  plans: Plans;
  now: () => number;
  planOf(projectId: string): Promise<import("../plans/plans.js").Plan>;
  /** The balance the key spends: live, or the test-mode sandbox for a test key; `since`: the request's arrival stamp. */
  creditBalance(projectId: string, environment: "live" | "test", since?: number): Promise<number | bigint>;
}

const ipOf = (ctx: HandlerContext) => ctx.values.get(clientIpKey);

/** VerifyApiKey's answer for each verdict of `ApiKeys.verify`. */
const verifyResults: Record<"malformed" | "unknown" | "revoked" | "expired" | "ip_not_allowed" | "valid", VerifyResult> = {
  malformed: VerifyResult.MALFORMED,
  unknown: VerifyResult.UNKNOWN,
  revoked: VerifyResult.REVOKED,
  expired: VerifyResult.EXPIRED,
  ip_not_allowed: VerifyResult.IP_NOT_ALLOWED,
  valid: VerifyResult.VALID,
};

/** The ApiKeyService implementation over the key domain. */
export function apiKeyService(deps: ApiKeyServiceDeps): ServiceImpl<typeof ApiKeyService> {
  const { keys } = deps;
  return {
    async createApiKey(req, ctx) {
      const { row, secret } = await keys.create(callerOf(ctx), req.parent, settingsOf(req.apiKey!), req.requestId, ipOf(ctx));
      return { apiKey: toApiKey(row, deps.now()), secret };
    },
    async getApiKey(req, ctx) {
      return { apiKey: toApiKey(await keys.get(callerOf(ctx), req.name), deps.now()) };
    },
    async listApiKeys(req, ctx) {
      const statuses = req.statuses.map((s) => statusFromWire[s]!).filter(Boolean);
      const page = await keys.list(callerOf(ctx), req.parent, statuses, req.includeScoped, req.pageSize, req.pageToken);
      const now = deps.now();
      return { apiKeys: page.items.map((r) => toApiKey(r, now)), nextPageToken: page.nextPageToken };
    },
    async updateApiKey(req, ctx) {
      const paths = fieldMaskPaths(req.updateMask, updatable);
      const row = await keys.update(callerOf(ctx), req.apiKey!.name, paths, settingsOf(req.apiKey!), ipOf(ctx));
      return { apiKey: toApiKey(row, deps.now()) };
    },
    async revokeApiKey(req, ctx) {
      return { apiKey: toApiKey(await keys.revoke(callerOf(ctx), req.name, req.reason, ipOf(ctx)), deps.now()) };
    },
    async rotateApiKey(req, ctx) {
      const r = await keys.rotate(callerOf(ctx), req.name, durationMs(req.gracePeriod), req.requestId, ipOf(ctx));
      return {
        apiKey: toApiKey(r.row, deps.now()),
        secret: r.secret,
        oldKey: keyName(r.old.project_id, r.old.key_id),
        oldKeyExpireTime: ms(r.old.expire_time),
      };
    },
    async createScopedKey(req, ctx) {
      const { row, secret } = await keys.createScoped(
        callerOf(ctx),
        req.parent,
        {
          parentKey: req.parentKey,
          ttlMs: durationMs(req.ttl),
          spendCapMicros: Number(req.spendCapMicros),
          allowedMethods: req.allowedMethods,
          allowedModels: req.allowedModels,
          displayName: req.displayName,
        },
        req.requestId,
        ipOf(ctx),
      );
      return { apiKey: toApiKey(row, deps.now()), secret, expireTime: ms(row.expire_time) };
    },
    async verifyApiKey(req, ctx) {
      // One arrival stamp for the keys and the balance: one check of other processes' commits serves them all.
      const since = ctx.values.get(arrivalKey);
      const verdict = await keys.verify(callerOf(ctx), req.key, req.clientIp, since);
      if (!("row" in verdict) || !verdict.row) return { valid: false, result: verifyResults[verdict.result] };
      const { row, effective } = verdict;
      const now = deps.now();
      const plan = await deps.planOf(row.project_id);
      const limit = effective.rateLimit ?? plan.rateLimit;
      let result = verifyResults[verdict.result];
      // Counting only when asked: a gateway that verifies and then forwards must not pay twice.
      const decision = req.countAgainstRateLimit && result === VerifyResult.VALID
        ? await deps.limiter.take(`key:${row.key_id}`, limit, now)
        : undefined;
      if (decision && !decision.allowed) result = VerifyResult.RATE_LIMITED;
      const capped = effective.remainingSpendMicros !== null;
      return {
        valid: result === VerifyResult.VALID,
        result,
        projectId: row.project_id,
        apiKey: keyName(row.project_id, row.key_id),
        scopes: effective.scopes.filter((s) => s !== Scope.UNSPECIFIED),
        allowedModels: effective.models,
        allowedMethods: effective.methods,
        environment: row.environment === "test" ? KeyEnvironment.TEST : KeyEnvironment.LIVE,
        kind: row.kind === "scoped" ? ApiKeyKind.SCOPED : ApiKeyKind.STANDARD,
        rateLimit: decision
          ? { limit: BigInt(decision.limit), remaining: BigInt(decision.remaining), resetTime: timestampFromMs(now + decision.resetMs) }
          : { limit: BigInt(limit.burst), remaining: BigInt(limit.burst), resetTime: timestampFromMs(now) },
        spendCapped: capped,
        remainingSpendMicros: capped ? BigInt(effective.remainingSpendMicros!) : 0n,
        creditBalanceMicros: BigInt(await deps.creditBalance(row.project_id, row.environment === "test" ? "test" : "live", since)),
        expireTime: ms(effective.expireTime),
      };
    },
    async listApiKeyEvents(req, ctx) {
      const types = req.types.map((t) => eventTypeNames.get(t)!).filter(Boolean);
      const page = await keys.listEvents(callerOf(ctx), req.parent, types, req.pageSize, req.pageToken);
      return { events: page.items.map(toEvent), nextPageToken: page.nextPageToken };
    },
  };
}
