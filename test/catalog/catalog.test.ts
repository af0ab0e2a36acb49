/**
 * The marketplace catalog against a real server: publishing and visibility,
 * hiring into plan slots (also under concurrency), invoking through the
 * metering path, platform models, roles, and bad input.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { AgentStatus, AgentVisibility, HireState } from "../../gen/formstate/v1/agent_service_pb.js";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import { LimitExceededSchema, LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { ModelStatus, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { expectCode } from "../support/expect-error.js";
import { type CatalogClients, names, useCatalogServer } from "./catalog-support.js";

const env = useCatalogServer();
const { clients, project, setPlan } = env;

describe("publish, share, hire, invoke, release", () => {
  it("walks the whole path", async () => {
    const owner = await project("pub", 0);
    const buyer = await project("buyer", 10_000_000);
    const other = await project("other", 0);
    await owner.models.createModel({ modelId: "pub/llm", model: { displayName: "LLM", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 2_000_000n, visibility: ModelVisibility.PUBLIC } });
    await owner.agents.createAgent({ agentId: "pub-public", agent: { displayName: "Public", pricePerInvocationMicros: 50_000n, visibility: AgentVisibility.PUBLIC, models: ["models/pub/llm"] } });
    await owner.agents.createAgent({ agentId: "pub-private", agent: { displayName: "Private", pricePerInvocationMicros: 1n } });
    await owner.agents.createAgent({ agentId: "pub-shared", agent: { displayName: "Shared", pricePerInvocationMicros: 1n, visibility: AgentVisibility.SHARED, sharedWithProjects: ["buyer"] } });

    expect(names((await buyer.agents.listAgents({})).agents)).toEqual(["agents/pub-public", "agents/pub-shared"]);
    expect(names((await other.agents.listAgents({})).agents)).toEqual(["agents/pub-public"]);
    expect(names((await owner.agents.listAgents({})).agents)).toEqual(["agents/pub-private", "agents/pub-public", "agents/pub-shared"]);
    // Invisible is NOT_FOUND, the same as absent.
    const hidden = await expectCode(other.agents.getAgent({ name: "agents/pub-private" }), Code.NotFound);
    const absent = await expectCode(other.agents.getAgent({ name: "agents/nothing" }), Code.NotFound);
    expect(hidden.rawMessage.replace("pub-private", "X")).toBe(absent.rawMessage.replace("nothing", "X"));
    // The share list is the owner's: others see the agent but not whom it is shared with.
    expect((await buyer.agents.getAgent({ name: "agents/pub-shared" })).agent?.sharedWithProjects).toEqual([]);
    await owner.agents.updateAgent({ agent: { name: "agents/pub-shared", sharedWithProjects: [] }, updateMask: { paths: ["shared_with_projects"] } });
    await expectCode(buyer.agents.getAgent({ name: "agents/pub-shared" }), Code.NotFound);

    // Invoking before hiring is refused; hire, invoke (price + reported tokens), then the summary shows it.
    await expectCode(buyer.agents.invokeAgent({ parent: "accounts/buyer", target: { case: "agent", value: "agents/pub-public" }, requestId: "i0", operation: "summarize" }), Code.FailedPrecondition, /not hired/);
    const { hire } = await buyer.agents.hireAgent({ parent: "accounts/buyer", agent: "agents/pub-public" });
    const inv = await buyer.agents.invokeAgent({ parent: "accounts/buyer", target: { case: "hire", value: hire!.name }, requestId: "i1", operation: "summarize", inputTokens: 1000n, outputTokens: 500n });
    expect(inv.invocation).toMatchObject({ agent: "agents/pub-public", model: "models/pub/llm", invocationCostMicros: 50_000n, tokenCostMicros: 2_000n, costMicros: 52_000n });
    // The grant, plus the Free plan's included credits granted on the first metered call of the month.
    expect(inv.balanceMicros).toBe(10_000_000n + 5_000_000n - 52_000n);
    const again = await buyer.agents.invokeAgent({ parent: "accounts/buyer", target: { case: "hire", value: hire!.name }, requestId: "i1", operation: "summarize", inputTokens: 1000n, outputTokens: 500n });
    expect(again.invocation?.name).toBe(inv.invocation?.name);
    expect(again.balanceMicros).toBe(inv.balanceMicros);
    const summary = await buyer.usage.getUsageSummary({ parent: "accounts/buyer" });
    expect(summary.agents).toEqual([expect.objectContaining({ agent: "agents/pub-public", invocations: 1n, costMicros: 52_000n })]);

    const released = await buyer.agents.releaseAgent({ name: hire!.name });
    expect(released.hire?.state).toBe(HireState.RELEASED);
    expect(released.agentSlots).toMatchObject({ used: 0n, limit: 1n });
    await expectCode(buyer.agents.invokeAgent({ parent: "accounts/buyer", target: { case: "hire", value: hire!.name }, requestId: "i2", operation: "x" }), Code.FailedPrecondition, /released/);
  });

  it("a price change applies to later usage; earlier records keep their price", async () => {
    const p = await project("prices", 1_000_000);
    await p.models.createModel({ modelId: "prices/m", model: { inputPriceMicrosPerMillion: 1_000_000n } });
    const first = await p.usage.recordUsage({ parent: "accounts/prices", requestId: "a", usage: { case: "modelUsage", value: { model: "models/prices/m", inputTokens: 1000n } } });
    await p.models.updateModel({ model: { name: "models/prices/m", inputPriceMicrosPerMillion: 3_000_000n }, updateMask: { paths: ["input_price_micros_per_million"] } });
    const second = await p.usage.recordUsage({ parent: "accounts/prices", requestId: "b", usage: { case: "modelUsage", value: { model: "models/prices/m", inputTokens: 1000n } } });
    expect([first.usageRecord?.costMicros, second.usageRecord?.costMicros]).toEqual([1_000n, 3_000n]);
    const { usageRecords } = await p.usage.listUsageRecords({ parent: "accounts/prices" });
    expect(usageRecords.map((r) => [r.requestId, r.price?.inputPriceMicrosPerMillion, r.costMicros])).toEqual([
      ["b", 3_000_000n, 3_000n],
      ["a", 1_000_000n, 1_000n],
    ]);
  });
});

describe("slots", () => {
  it("Free hires one agent; the second gets the upgrade detail; after upgrading to Pro it succeeds", async () => {
    const pub = await project("slotpub");
    for (const id of ["s1", "s2"]) await pub.agents.createAgent({ agentId: id, agent: { pricePerInvocationMicros: 1n, visibility: AgentVisibility.PUBLIC } });
    const p = await project("slotfree");
    await p.agents.hireAgent({ parent: "accounts/slotfree", agent: "agents/s1" });
    await expectCode(p.agents.hireAgent({ parent: "accounts/slotfree", agent: "agents/s1" }), Code.AlreadyExists);
    const err = await expectCode(p.agents.hireAgent({ parent: "accounts/slotfree", agent: "agents/s2" }), Code.ResourceExhausted, /allows 1 hired agents/);
    const [detail] = err.findDetails(LimitExceededSchema);
    expect(detail).toMatchObject({ reason: LimitReason.AGENT_SLOTS, limit: 1n, used: 1n });
    expect(detail.upgradeOptions.map((o) => [o.tier, o.limit, o.unlimited])).toEqual([
      [PlanTier.PRO, 5n, false],
      [PlanTier.ENTERPRISE, 0n, true],
    ]);
    const elig = await p.usage.checkEligibility({ parent: "accounts/slotfree", check: { case: "hireAgent", value: "agents/s2" } });
    expect(elig).toMatchObject({ eligible: false, reason: LimitReason.AGENT_SLOTS });
    await setPlan("slotfree", "pro");
    const { agentSlots } = await p.agents.hireAgent({ parent: "accounts/slotfree", agent: "agents/s2" });
    expect(agentSlots).toMatchObject({ used: 2n, limit: 5n });
    expect((await p.accounts.getAccount({ name: "accounts/slotfree" })).account?.agentSlots).toMatchObject({ used: 2n, limit: 5n });
  });

  it("20 concurrent hires on a 5-slot plan: exactly 5 succeed", async () => {
    const pub = await project("racepub");
    for (let i = 0; i < 20; i++) await pub.agents.createAgent({ agentId: `race-${i}`, agent: { pricePerInvocationMicros: 1n, visibility: AgentVisibility.PUBLIC } });
    const p = await project("racer");
    await setPlan("racer", "pro");
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => p.agents.hireAgent({ parent: "accounts/racer", agent: `agents/race-${i}` })));
    const ok = results.filter((r) => r.status === "fulfilled").length;
    const codes = results.filter((r) => r.status === "rejected").map((r) => ConnectError.from((r as PromiseRejectedResult).reason).code);
    expect(ok).toBe(5);
    expect(codes).toEqual(Array(15).fill(Code.ResourceExhausted));
    expect((await p.agents.listHires({ parent: "accounts/racer" })).hires).toHaveLength(5);
    expect(await env.ts.app.agents.activeHires(env.ts.app.database.db, "racer")).toBe(5);
  });
});

describe("disabling and deleting hired agents", () => {
  it("disabling refuses new hires and invocations but keeps hires; deleting needs force while others hire it, then releases them", async () => {
    const owner = await project("dis-own");
    const user = await project("dis-user", 1_000_000);
    await owner.agents.createAgent({ agentId: "dis-a", agent: { pricePerInvocationMicros: 10n, visibility: AgentVisibility.PUBLIC } });
    const { hire } = await user.agents.hireAgent({ parent: "accounts/dis-user", agent: "agents/dis-a" });
    await owner.agents.updateAgent({ agent: { name: "agents/dis-a", status: AgentStatus.DISABLED }, updateMask: { paths: ["status"] } });
    await expectCode(user.agents.invokeAgent({ parent: "accounts/dis-user", target: { case: "hire", value: hire!.name }, requestId: "x", operation: "op" }), Code.FailedPrecondition, /disabled/);
    const third = await project("dis-third");
    await expectCode(third.agents.hireAgent({ parent: "accounts/dis-third", agent: "agents/dis-a" }), Code.FailedPrecondition, /disabled/);
    expect((await user.agents.listHires({ parent: "accounts/dis-user" })).hires.map((h) => h.state)).toEqual([HireState.ACTIVE]);

    await expectCode(owner.agents.deleteAgent({ name: "agents/dis-a" }), Code.FailedPrecondition, /hired by 1 other project/);
    await owner.agents.deleteAgent({ name: "agents/dis-a", force: true });
    expect((await user.agents.listHires({ parent: "accounts/dis-user", includeReleased: true })).hires.map((h) => h.state)).toEqual([HireState.RELEASED]);
    await expectCode(user.agents.getAgent({ name: "agents/dis-a" }), Code.NotFound);
  });
});

describe("bad input is INVALID_ARGUMENT naming the field", () => {
  beforeAll(async () => {
    await project("bad-cat");
  });
  const agent = { case: "agent" as const, value: "agents/x" };
  it.each<[string, (c: CatalogClients) => Promise<unknown>, RegExp]>([
    ["CreateModel bad id", (c) => c.models.createModel({ modelId: "no-slash", model: {} }), /^model_id: /],
    ["CreateModel upper-case id", (c) => c.models.createModel({ modelId: "Bad/Model", model: {} }), /^model_id: /],
    ["CreateModel no model", (c) => c.models.createModel({ modelId: "bad-cat/m" }), /^model: /],
    ["CreateModel negative price", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { inputPriceMicrosPerMillion: -1n } }), /^model\.input_price_micros_per_million: /],
    ["CreateModel price too high", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { outputPriceMicrosPerMillion: 10_000_000_001n } }), /^model\.output_price_micros_per_million: /],
    ["CreateModel negative context", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { contextWindow: -1 } }), /^model\.context_window: /],
    ["CreateModel undefined status", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { status: 9 as ModelStatus } }), /^model\.status: /],
    ["CreateModel undefined visibility", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { visibility: 7 as ModelVisibility } }), /^model\.visibility: /],
    ["CreateModel long display name", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { displayName: "x".repeat(201) } }), /^model\.display_name: /],
    ["CreateModel long request_id", (c) => c.models.createModel({ modelId: "bad-cat/m", model: {}, requestId: "r".repeat(65) }), /^request_id: /],
    ["GetModel bad name", (c) => c.models.getModel({ name: "models/x" }), /^name: /],
    ["ListModels bad order", (c) => c.models.listModels({ orderBy: "price desc" }), /^order_by: /],
    ["ListModels oversized page", (c) => c.models.listModels({ pageSize: 1001 }), /^page_size: /],
    ["ListModels negative page", (c) => c.models.listModels({ pageSize: -1 }), /^page_size: /],
    ["ListModels bad provider", (c) => c.models.listModels({ provider: "Open AI" }), /^provider: /],
    ["ListModels undefined status", (c) => c.models.listModels({ status: 4 as ModelStatus }), /^status: /],
    ["ListModels forged page token", (c) => c.models.listModels({ pageToken: "eyJ4IjoxfQ" }), /^page_token: /],
    ["UpdateModel no mask", (c) => c.models.updateModel({ model: { name: "models/bad-cat/m" } }), /^update_mask: /],
    ["UpdateModel no name", (c) => c.models.updateModel({ model: {}, updateMask: { paths: ["display_name"] } }), /^model: name is required/],
    ["UpdateModel owner in mask", (c) => c.models.updateModel({ model: { name: "models/bad-cat/m" }, updateMask: { paths: ["owner_project"] } }), /^update_mask: /],
    ["UpdateModel status to unspecified", (c) => c.models.updateModel({ model: { name: "models/bad-cat/m" }, updateMask: { paths: ["status"] } }), /status cannot be set to MODEL_STATUS_UNSPECIFIED/],
    ["UpdateModel visibility to unspecified", (c) => c.models.updateModel({ model: { name: "models/bad-cat/m" }, updateMask: { paths: ["visibility"] } }), /visibility cannot be set to MODEL_VISIBILITY_UNSPECIFIED/],
    ["DeleteModel bad name", (c) => c.models.deleteModel({ name: "bad" }), /^name: /],
    ["DeleteModel long etag", (c) => c.models.deleteModel({ name: "models/bad-cat/m", etag: "e".repeat(129) }), /^etag: /],
    ["CreateAgent bad id", (c) => c.agents.createAgent({ agentId: "Bad_Id", agent: {} }), /^agent_id: /],
    ["CreateAgent no agent", (c) => c.agents.createAgent({ agentId: "ok" }), /^agent: /],
    ["CreateAgent bad price", (c) => c.agents.createAgent({ agentId: "ok", agent: { pricePerInvocationMicros: -5n } }), /^agent\.price_per_invocation_micros: /],
    ["CreateAgent price over 1000 USD", (c) => c.agents.createAgent({ agentId: "ok", agent: { pricePerInvocationMicros: 1_000_000_001n } }), /^agent\.price_per_invocation_micros: /],
    ["CreateAgent bad model", (c) => c.agents.createAgent({ agentId: "ok", agent: { models: ["gpt"] } }), /^agent\.models\[0\]: /],
    ["CreateAgent repeated model", (c) => c.agents.createAgent({ agentId: "ok", agent: { models: ["models/a/b", "models/a/b"] } }), /^agent\.models: /],
    ["CreateAgent bad shared project", (c) => c.agents.createAgent({ agentId: "ok", agent: { visibility: AgentVisibility.SHARED, sharedWithProjects: ["Not A Project"] } }), /^agent\.shared_with_projects\[0\]: /],
    ["CreateAgent shared list on private", (c) => c.agents.createAgent({ agentId: "ok2", agent: { sharedWithProjects: ["x"] } }), /^agent\.shared_with_projects: is only for SHARED agents$/],
    ["CreateAgent undefined visibility", (c) => c.agents.createAgent({ agentId: "ok", agent: { visibility: 5 as AgentVisibility } }), /^agent\.visibility: /],
    ["GetAgent bad name", (c) => c.agents.getAgent({ name: "agent/x" }), /^name: /],
    ["ListAgents bad order", (c) => c.agents.listAgents({ orderBy: "random" }), /^order_by: /],
    ["ListAgents bad owner", (c) => c.agents.listAgents({ ownerProject: "Bad Owner" }), /^owner_project: /],
    ["ListAgents bad model", (c) => c.agents.listAgents({ model: "gpt-4" }), /^model: /],
    ["ListAgents undefined status", (c) => c.agents.listAgents({ status: 8 as AgentStatus }), /^status: /],
    ["ListAgents forged page token", (c) => c.agents.listAgents({ orderBy: "price_per_invocation", pageToken: "WyJ4Il0" }), /^page_token: /],
    ["UpdateAgent bad mask", (c) => c.agents.updateAgent({ agent: { name: "agents/x" }, updateMask: { paths: ["owner_project"] } }), /^update_mask: /],
    ["UpdateAgent no mask", (c) => c.agents.updateAgent({ agent: { name: "agents/x" } }), /^update_mask: /],
    ["UpdateAgent no name", (c) => c.agents.updateAgent({ agent: {}, updateMask: { paths: ["display_name"] } }), /^agent: name is required/],
    ["UpdateAgent status to unspecified", (c) => c.agents.updateAgent({ agent: { name: "agents/x" }, updateMask: { paths: ["status"] } }), /status cannot be set to AGENT_STATUS_UNSPECIFIED/],
    ["DeleteAgent bad name", (c) => c.agents.deleteAgent({ name: "" }), /^name: /],
    ["DeleteAgent long etag", (c) => c.agents.deleteAgent({ name: "agents/x", etag: "e".repeat(129) }), /^etag: /],
    ["HireAgent bad agent", (c) => c.agents.hireAgent({ parent: "accounts/bad-cat", agent: "x" }), /^agent: /],
    ["HireAgent bad parent", (c) => c.agents.hireAgent({ parent: "bad-cat", agent: "agents/x" }), /^parent: /],
    ["HireAgent long request_id", (c) => c.agents.hireAgent({ parent: "accounts/bad-cat", agent: "agents/x", requestId: "r".repeat(65) }), /^request_id: /],
    ["ReleaseAgent bad name", (c) => c.agents.releaseAgent({ name: "accounts/bad-cat/hire/x" }), /^name: /],
    ["ListHires bad parent", (c) => c.agents.listHires({ parent: "bad" }), /^parent: /],
    ["ListHires oversized page", (c) => c.agents.listHires({ parent: "accounts/bad-cat", pageSize: 5000 }), /^page_size: /],
    ["ListHires forged page token", (c) => c.agents.listHires({ parent: "accounts/bad-cat", pageToken: "WyJ4Il0" }), /^page_token: /],
    ["InvokeAgent no request_id", (c) => c.agents.invokeAgent({ parent: "accounts/bad-cat", target: agent, operation: "op" }), /^request_id: /],
    ["InvokeAgent no target", (c) => c.agents.invokeAgent({ parent: "accounts/bad-cat", requestId: "r", operation: "op" }), /^target: /],
    ["InvokeAgent negative tokens", (c) => c.agents.invokeAgent({ parent: "accounts/bad-cat", target: agent, requestId: "r", operation: "op", inputTokens: -1n }), /^input_tokens: /],
    ["InvokeAgent no operation", (c) => c.agents.invokeAgent({ parent: "accounts/bad-cat", target: agent, requestId: "r" }), /^operation: /],
  ])("%s", async (_label, call, field) => {
    const err = await expectCode(call(await clients("bad-cat")), Code.InvalidArgument);
    expect(err.rawMessage).toMatch(field);
  });
});
