/** UsageService over the wire: translates messages to the metering domain and back. */
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { ActorSchema } from "../../gen/formstate/v1/common_pb.js";
import { UpgradeOptionSchema } from "../../gen/formstate/v1/errors_pb.js";
import {
  type Authorization,
  AuthorizationSchema,
  AuthorizationState,
  type ModelUsage,
  type RecordUsageRequest,
  type AgentOperation,
  UsageGranularity,
  type UsageRecord,
  UsageRecordSchema,
  type UsageService,
} from "../../gen/formstate/v1/usage_service_pb.js";
import { callerOf } from "../auth/principal.js";
import { invalidArgument } from "../errors.js";
import * as ledger from "../ledger/ledger.js";
import { requestIdKey } from "../server/request-log.js";
import { callerEnvironment, readEnvironment, wireEnvironment } from "../ledger/sandbox.js";
import { durationMs } from "../wire/duration.js";
import { itemViolation, toItemError } from "./batch-items.js";
import type { UsageReports } from "./usage-reports.js";
import type { AlertMethods } from "../alerts/alert-service.js";
import type { EventMethods } from "../events/event-stream.js";
import { type AuthorizationRow, type RecordInput, type Usage, type UsageInput, type UsageRecordRow, authorizationName, recordName } from "./usage.js";
import { keyName } from "../names/names.js";
import { projectOf } from "../auth/tenancy.js";

/** Every metered answer also carries the balance as a header, for clients that only read headers. */
export const BALANCE_HEADER = "x-credit-balance-micros";

const tsMs = (t: Timestamp | undefined) => (t ? timestampDate(t).getTime() : undefined);
const keyNameOf = (projectId: string, keyId: string | null) => (keyId ? keyName(projectId, keyId) : "");

function usageOf(u: { case: "modelUsage"; value: ModelUsage } | { case: "agentOperation"; value: AgentOperation } | { case: undefined }): UsageInput {
  if (u.case === "modelUsage") return { kind: "model", model: u.value.model, inputTokens: Number(u.value.inputTokens), outputTokens: Number(u.value.outputTokens) };
  if (u.case === "agentOperation") {
    const v = u.value;
    // Tokens only when reported, so the request hash of a plain operation stays what it always was.
    const tokens = v.model ? { model: v.model, inputTokens: Number(v.inputTokens), outputTokens: Number(v.outputTokens) } : {};
    return { kind: "agent", agent: v.agent, operation: v.operation, ...tokens };
  }
  throw new Error("usage is required"); // protovalidate's oneof rule refuses this first
}

/** A RecordUsageRequest (alone, or an item of a batch) as the metering domain's input. */
function recordInput(req: RecordUsageRequest): RecordInput {
  return {
    requestId: req.requestId,
    usage: usageOf(req.usage),
    authorization: req.authorization || undefined,
    occurTime: tsMs(req.occurTime),
    attributes: req.attributes,
    apiKey: req.apiKey || undefined,
  };
}

export function toUsageRecord(r: UsageRecordRow): UsageRecord {
  const kind = r.recorded_by_kind;
  const id = r.recorded_by;
  return create(UsageRecordSchema, {
    name: recordName(r.project_id, r.record_id),
    requestId: r.request_id,
    usage:
      r.kind === "model"
        ? { case: "modelUsage", value: { model: r.model!, inputTokens: BigInt(r.input_tokens), outputTokens: BigInt(r.output_tokens) } }
        : { case: "agentOperation", value: { agent: r.agent!, operation: r.operation ?? "", model: r.model ?? "", inputTokens: BigInt(r.input_tokens), outputTokens: BigInt(r.output_tokens) } },
    costMicros: BigInt(r.cost_micros),
    price: { inputPriceMicrosPerMillion: BigInt(r.input_price), outputPriceMicrosPerMillion: BigInt(r.output_price), pricePerInvocationMicros: BigInt(r.invocation_price) },
    apiKey: keyNameOf(r.project_id, r.api_key_id),
    recordedBy: create(ActorSchema, { kind: kind === "user" ? { case: "userId", value: id } : kind === "api_key" ? { case: "apiKey", value: id } : { case: "system", value: id } }),
    authorization: r.authorization_id ? authorizationName(r.project_id, r.authorization_id) : "",
    invocation: r.invocation ?? "",
    createTime: timestampFromMs(r.create_time),
    occurTime: timestampFromMs(r.occur_time),
    attributes: JSON.parse(r.attributes) as Record<string, string>,
    environment: wireEnvironment(r.environment),
  });
}

const states: Record<string, AuthorizationState> = {
  held: AuthorizationState.HELD,
  settled: AuthorizationState.SETTLED,
  released: AuthorizationState.RELEASED,
  expired: AuthorizationState.EXPIRED,
};

function toAuthorization(a: AuthorizationRow): Authorization {
  return create(AuthorizationSchema, {
    name: authorizationName(a.project_id, a.auth_id),
    requestId: a.request_id,
    heldMicros: BigInt(a.held_micros),
    settledMicros: BigInt(a.settled_micros),
    state: states[a.state] ?? AuthorizationState.UNSPECIFIED,
    model: a.model ?? "",
    agent: a.agent ?? "",
    apiKey: keyNameOf(a.project_id, a.api_key_id),
    usageRecord: a.usage_record_id ? recordName(a.project_id, a.usage_record_id) : "",
    createTime: timestampFromMs(a.create_time),
    expireTime: timestampFromMs(a.expire_time),
    closeTime: a.close_time === null ? undefined : timestampFromMs(a.close_time),
  });
}

function withBalance<T>(ctx: HandlerContext, balance: number | bigint, res: T): T {
  ctx.responseHeader.set(BALANCE_HEADER, String(balance));
  return res;
}

/** The UsageService implementation over the metering domain. */
export function usageService(usage: Usage, reports: UsageReports): Omit<ServiceImpl<typeof UsageService>, keyof AlertMethods | keyof EventMethods> {
  return {
    async recordUsage(req, ctx) {
      const { record, balance } = await usage.record(callerOf(ctx), req.parent, recordInput(req));
      return withBalance(ctx, balance, { usageRecord: toUsageRecord(record), balanceMicros: BigInt(balance) });
    },
    async batchRecordUsage(req, ctx) {
      const caller = callerOf(ctx);
      const projectId = projectOf(ctx);
      const seen: (ConnectError | undefined)[] = req.requests.map((item, i) => {
        if (item.parent && item.parent !== req.parent) throw invalidArgument(`requests[${i}].parent`, `must be empty or the batch's parent ${req.parent}`);
        item.parent = req.parent;
        return itemViolation(item);
      });
      const valid = req.requests.filter((_, i) => !seen[i]);
      const outcomes = await usage.recordBatch(caller, req.parent, valid.map(recordInput));
      let k = 0;
      const requestId = ctx.values.get(requestIdKey);
      const results = req.requests.map((item, i) => {
        const bad = seen[i];
        if (bad) return { requestId: item.requestId, result: { case: "error" as const, value: toItemError(bad) } };
        const o = outcomes[k++];
        if (o.ok) return { requestId: item.requestId, result: { case: "response" as const, value: { usageRecord: toUsageRecord(o.value.record), balanceMicros: BigInt(o.value.balance) } } };
        const err = o.error instanceof ConnectError ? o.error : new ConnectError(`internal error (request id ${requestId})`, Code.Internal);
        return { requestId: item.requestId, result: { case: "error" as const, value: toItemError(err) } };
      });
      const balance = await ledger.balanceOf(usage.database(), projectId, callerEnvironment(caller));
      return withBalance(ctx, balance, { results, balanceMicros: BigInt(balance) });
    },
    async authorizeUsage(req, ctx) {
      const e = req.estimate;
      const estimate =
        e.case === "estimatedCostMicros" ? { kind: "cost" as const, micros: Number(e.value) } : usageOf(e as Parameters<typeof usageOf>[0]);
      const { auth, balance } = await usage.authorize(callerOf(ctx), req.parent, {
        requestId: req.requestId,
        estimate,
        ttlMs: req.ttl ? durationMs(req.ttl) : undefined,
        apiKey: req.apiKey || undefined,
      });
      return withBalance(ctx, balance, { authorization: toAuthorization(auth), balanceMicros: BigInt(balance) });
    },
    async releaseAuthorization(req, ctx) {
      const { auth, balance } = await usage.release(callerOf(ctx), req.name);
      return withBalance(ctx, balance, { authorization: toAuthorization(auth), balanceMicros: BigInt(balance) });
    },
    async checkEligibility(req, ctx) {
      const c = req.check;
      const check =
        c.case === "modelUsage"
          ? { kind: "model" as const, model: c.value.model, inputTokens: Number(c.value.inputTokens), outputTokens: Number(c.value.outputTokens) }
          : c.case === "hireAgent"
            ? { kind: "hire" as const, agent: c.value }
            : { kind: "invoke" as const, agent: c.value ?? "" };
      const r = await usage.eligibility(callerOf(ctx), req.parent, check);
      return {
        eligible: r.eligible,
        reason: r.reason,
        message: r.message,
        estimatedCostMicros: BigInt(r.costMicros),
        upgradeOptions: r.upgrades.map((p) =>
          create(UpgradeOptionSchema, {
            tier: p.tier,
            limit: BigInt(check.kind === "hire" ? (p.agentSlots ?? 0) : p.includedCreditsMicros),
            unlimited: check.kind === "hire" ? p.agentSlots === null : p.overdraftAllowed,
          }),
        ),
        balanceMicros: BigInt(r.balance),
        creditsNeededMicros: BigInt(r.creditsNeeded),
        hireRequired: r.hireRequired,
      };
    },
    async getUsageSummary(req, ctx) {
      const caller = callerOf(ctx);
      const projectId = projectOf(ctx);
      const s = await reports.summary(projectId, tsMs(req.startTime), tsMs(req.endTime), readEnvironment(caller, req.environment));
      return {
        startTime: timestampFromMs(s.start),
        endTime: timestampFromMs(s.end),
        models: s.models.map((m) => ({
          model: m.model,
          inputTokens: BigInt(m.inputTokens),
          outputTokens: BigInt(m.outputTokens),
          requests: BigInt(m.requests),
          costMicros: BigInt(m.costMicros),
          agentInvocations: BigInt(m.agentInvocations),
        })),
        agents: s.agents.map((a) => ({
          agent: a.agent,
          invocations: BigInt(a.invocations),
          costMicros: BigInt(a.costMicros),
          invocationCostMicros: BigInt(a.invocationCostMicros),
          inputTokens: BigInt(a.inputTokens),
          outputTokens: BigInt(a.outputTokens),
        })),
        totals: {
          inputTokens: BigInt(s.totals.inputTokens),
          outputTokens: BigInt(s.totals.outputTokens),
          requests: BigInt(s.totals.requests),
          invocations: BigInt(s.totals.invocations),
          costMicros: BigInt(s.totals.costMicros),
        },
      };
    },
    async listUsageRecords(req, ctx) {
      const caller = callerOf(ctx);
      const projectId = projectOf(ctx);
      const keyId = req.apiKey ? req.apiKey.split("/").pop() : undefined;
      const environment = readEnvironment(caller, req.environment);
      const page = await reports.list(projectId, { start: tsMs(req.startTime), end: tsMs(req.endTime), model: req.model || undefined, agent: req.agent || undefined, apiKeyId: keyId, environment }, req.pageSize, req.pageToken);
      return { usageRecords: page.items.map(toUsageRecord), nextPageToken: page.nextPageToken };
    },
    async getUsageTimeseries(req, ctx) {
      const caller = callerOf(ctx);
      const projectId = projectOf(ctx);
      const points = await reports.timeseries(
        projectId,
        req.granularity === UsageGranularity.HOUR ? "hour" : "day",
        tsMs(req.startTime)!,
        tsMs(req.endTime),
        { model: req.model || undefined, agent: req.agent || undefined },
        readEnvironment(caller, req.environment),
      );
      return {
        points: points.map((p) => ({
          startTime: timestampFromMs(p.time),
          inputTokens: BigInt(p.inputTokens),
          outputTokens: BigInt(p.outputTokens),
          requests: BigInt(p.requests),
          invocations: BigInt(p.invocations),
          costMicros: BigInt(p.costMicros),
        })),
      };
    },
    async forecastUsage(req, ctx) {
      const caller = callerOf(ctx);
      const projectId = projectOf(ctx);
      const f = await reports.forecast(projectId, readEnvironment(caller, req.environment));
      return {
        periodStartTime: timestampFromMs(f.start),
        periodEndTime: timestampFromMs(f.end),
        spentToDateMicros: BigInt(f.spentToDate),
        projectedSpendMicros: BigInt(f.projectedSpend),
        projectedInputTokens: BigInt(f.projectedInputTokens),
        projectedOutputTokens: BigInt(f.projectedOutputTokens),
        balanceMicros: BigInt(f.balance),
        creditsExhaustedTime: f.creditsExhaustedTime === undefined ? undefined : timestampFromMs(f.creditsExhaustedTime),
      };
    },
  };
}
