/** AgentService over the wire; InvokeAgent charges through the metering path. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type Agent,
  AgentSchema,
  type AgentService,
  AgentStatus,
  AgentVisibility,
  type Hire,
  HireSchema,
  HireState,
} from "../../gen/formstate/v1/agent_service_pb.js";
import { ActorSchema, QuotaSchema } from "../../gen/formstate/v1/common_pb.js";
import { callerOf } from "../auth/principal.js";
import { invalidArgument } from "../errors.js";
import type { Plan } from "../plans/plans.js";
import { BALANCE_HEADER } from "../usage/usage-service.js";
import { type Usage, recordName } from "../usage/usage.js";
import { invocationName, isKeyName, keyName } from "../names/names.js";
import { childOf, projectOf } from "../auth/tenancy.js";
import { fieldMaskPaths } from "../wire/field-mask.js";
import { type AgentFields, type AgentOrder, type AgentRow, type Agents, type HireRow, agentName, hireName } from "./agents.js";
import { etagOf } from "./etag.js";
import { wireEnum } from "./wire-enum.js";

const status = wireEnum<AgentStatus>({ active: AgentStatus.ACTIVE, deprecated: AgentStatus.DEPRECATED, disabled: AgentStatus.DISABLED });
const visibility = wireEnum<AgentVisibility>({ private: AgentVisibility.PRIVATE, shared: AgentVisibility.SHARED, public: AgentVisibility.PUBLIC });

export function toAgent(r: AgentRow, viewer: string): Agent {
  return create(AgentSchema, {
    name: agentName(r.agent_id),
    ownerProject: r.owner_project,
    displayName: r.display_name,
    description: r.description,
    models: JSON.parse(r.models) as string[],
    pricePerInvocationMicros: BigInt(r.price_per_invocation),
    status: status.wire(r.status),
    visibility: visibility.wire(r.visibility),
    // Who else it is shared with is the owner's business.
    sharedWithProjects: r.owner_project === viewer ? (JSON.parse(r.shared_with) as string[]) : [],
    publisherShareBps: r.publisher_share_bps ?? undefined,
    createTime: timestampFromMs(r.create_time),
    updateTime: timestampFromMs(r.update_time),
    etag: etagOf(r),
  });
}

function toHire(h: HireRow): Hire {
  return create(HireSchema, {
    name: hireName(h.project_id, h.hire_id),
    agent: agentName(h.agent_id),
    state: h.state === "active" ? HireState.ACTIVE : HireState.RELEASED,
    hiredBy: create(ActorSchema, { kind: isKeyName(h.hired_by) ? { case: "apiKey", value: h.hired_by } : { case: "userId", value: h.hired_by } }),
    createTime: timestampFromMs(h.create_time),
    releaseTime: h.release_time === null ? undefined : timestampFromMs(h.release_time),
  });
}

const slots = (used: number, plan: Plan) => create(QuotaSchema, { used: BigInt(used), limit: BigInt(plan.agentSlots ?? 0), unlimited: plan.agentSlots === null });

function fieldsOf(a: Agent): AgentFields {
  return {
    displayName: a.displayName,
    description: a.description,
    models: a.models,
    pricePerInvocation: Number(a.pricePerInvocationMicros),
    status: status.name(a.status),
    visibility: visibility.name(a.visibility),
    sharedWith: a.sharedWithProjects,
    publisherShareBps: a.publisherShareBps,
  };
}

const updatable = ["display_name", "description", "models", "price_per_invocation_micros", "status", "visibility", "shared_with_projects", "publisher_share_bps"] as const;

export function agentService(agents: Agents, usage: Usage): ServiceImpl<typeof AgentService> {
  const viewer = (ctx: HandlerContext) => callerOf(ctx).projectId;
  return {
    async createAgent(req, ctx) {
      return { agent: toAgent(await agents.create(callerOf(ctx), req.agentId, fieldsOf(req.agent!), req.requestId), viewer(ctx)) };
    },
    async getAgent(req, ctx) {
      return { agent: toAgent(await agents.get(callerOf(ctx), req.name), viewer(ctx)) };
    },
    async listAgents(req, ctx) {
      const filter = {
        ownerProject: req.ownerProject || undefined,
        visibility: visibility.name(req.visibility) || undefined,
        model: req.model || undefined,
        status: status.name(req.status) || undefined,
        hiredOnly: req.hiredOnly,
      };
      const page = await agents.list(callerOf(ctx), filter, (req.orderBy || "name") as AgentOrder, req.pageSize, req.pageToken);
      return { agents: page.items.map((a) => toAgent(a, viewer(ctx))), nextPageToken: page.nextPageToken };
    },
    async updateAgent(req, ctx) {
      const paths = fieldMaskPaths(req.updateMask, updatable);
      return { agent: toAgent(await agents.update(callerOf(ctx), req.agent!.name, paths, fieldsOf(req.agent!)), viewer(ctx)) };
    },
    async deleteAgent(req, ctx) {
      await agents.delete(callerOf(ctx), req.name, req.force, req.etag);
      return {};
    },
    async hireAgent(req, ctx) {
      const r = await agents.hire(callerOf(ctx), projectOf(ctx), req.agent, req.requestId);
      return { hire: toHire(r.hire), agentSlots: slots(r.used, r.plan) };
    },
    async releaseAgent(req, ctx) {
      const r = await agents.release(callerOf(ctx), childOf(ctx, "hires"));
      return { hire: toHire(r.hire), agentSlots: slots(r.used, r.plan) };
    },
    async listHires(req, ctx) {
      const page = await agents.hires(callerOf(ctx), projectOf(ctx), req.includeReleased, req.pageSize, req.pageToken);
      return { hires: page.items.map(toHire), nextPageToken: page.nextPageToken };
    },
    async invokeAgent(req, ctx) {
      const caller = callerOf(ctx);
      const projectId = projectOf(ctx);
      const target = req.target.case === "hire" ? { hire: req.target.value } : { agent: req.target.value };
      const { agent, hire, models } = await agents.forInvocation(usage.database(), projectId, target);
      const tokens = req.inputTokens !== undefined || req.outputTokens !== undefined;
      let model = req.model;
      if (tokens && !model) {
        if (models.length !== 1) throw invalidArgument("model", "is required when tokens are reported for an agent that lists several models");
        model = models[0];
      }
      if (model && !models.includes(model)) throw invalidArgument("model", `${model} is not one of ${agentName(agent.agent_id)}'s models`);
      // Invocations' request ids have their own namespace: a RecordUsage id never answers or blocks one.
      const { record, balance } = await usage.record(caller, req.parent, {
        requestId: req.requestId,
        namespace: "invoke",
        usage: { kind: "agent", agent: agentName(agent.agent_id), operation: req.operation, model: model || undefined, inputTokens: Number(req.inputTokens ?? 0n), outputTokens: Number(req.outputTokens ?? 0n) },
        attributes: {},
        apiKey: req.apiKey || undefined,
        invocation: hireName(projectId, hire.hire_id),
      });
      ctx.responseHeader.set(BALANCE_HEADER, String(balance));
      const tokenCost = record.cost_micros - record.invocation_price;
      return {
        invocation: {
          name: invocationName(projectId, record.record_id),
          agent: record.agent ?? "",
          hire: record.invocation ?? "",
          operation: record.operation ?? "",
          model: record.model ?? "",
          inputTokens: BigInt(record.input_tokens),
          outputTokens: BigInt(record.output_tokens),
          invocationCostMicros: BigInt(record.invocation_price),
          tokenCostMicros: BigInt(tokenCost),
          costMicros: BigInt(record.cost_micros),
          requestId: req.requestId,
          usageRecord: recordName(projectId, record.record_id),
          apiKey: record.api_key_id ? keyName(projectId, record.api_key_id) : "",
          createTime: timestampFromMs(record.create_time),
        },
        balanceMicros: BigInt(balance),
      };
    },
  };
}
