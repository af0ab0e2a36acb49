/**
 * The marketplace catalog against a real server: publishing and visibility,
 * hiring into plan slots (also under concurrency), invoking through the
 * metering path, platform models, roles, and bad input.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { AgentService, AgentStatus, AgentVisibility, HireState } from "../../gen/formstate/v1/agent_service_pb.js";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import { LimitExceededSchema, LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { ModelService, ModelStatus, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let ts: TestServer;
beforeAll(async () => {
  // Rate limits are the API-key tests' subject; here they would only throttle the many calls of one user.
  ts = await startTestServer({}, { plans: new Plans(defaultPlans.map((p) => ({ ...p, rateLimit: { requestsPerSecond: 10_000, burst: 10_000 } }))) });
});
afterAll(async () => {
  await ts?.close();
});

type Role = "admin" | "developer" | "user";
async function clients(projectId: string, role: Role = "developer") {
  const t = ts.grpc(await ts.token({ projectId, role, subject: `${projectId}-${role}` }));
  return { agents: createClient(AgentService, t), models: createClient(ModelService, t), usage: createClient(UsageService, t), accounts: createClient(AccountService, t) };
}
async function project(projectId: string, credits = 0) {
  await (await clients(projectId, "admin")).accounts.createAccount({ account: {} });
  if (credits) await ts.app.database.transaction((tx) => ledger.book(tx, { projectId, kind: "grant", amountMicros: credits, idempotencyKey: `t:${projectId}` }, Date.now()));
  return clients(projectId);
}
async function setPlan(projectId: string, tier: "free" | "pro" | "enterprise") {
  await ts.app.database.db.updateTable("account").set({ plan_tier: tier }).where("project_id", "=", projectId).execute();
  ts.app.accounts.invalidatePlan(projectId);
}
const names = (xs: Array<{ name: string }>) => xs.map((x) => x.name).sort();

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

describe("models", () => {
  it("CRUD, visibility, filters, ordering and pagination", async () => {
    const a = await project("mod-a");
    const b = await project("mod-b");
    const prices = [5n, 1n, 4n, 2n, 3n];
    for (let i = 0; i < 5; i++) {
      await a.models.createModel({ modelId: `mod-a/m${i}`, model: { displayName: `m${i}`, inputPriceMicrosPerMillion: prices[i], visibility: i % 2 ? ModelVisibility.PUBLIC : ModelVisibility.PRIVATE } });
    }
    await expectCode(a.models.createModel({ modelId: "mod-a/m0", model: {} }), Code.AlreadyExists);
    const pageThrough = async (client: typeof a, orderBy: string) => {
      const out: string[] = [];
      let pageToken = "";
      do {
        const r = await client.models.listModels({ pageSize: 2, pageToken, orderBy, provider: "mod-a" });
        expect(r.models.length).toBeLessThanOrEqual(2);
        out.push(...r.models.map((m) => m.name.slice("models/mod-a/".length)));
        pageToken = r.nextPageToken;
      } while (pageToken);
      return out;
    };
    expect(await pageThrough(a, "name")).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(await pageThrough(a, "input_price")).toEqual(["m1", "m3", "m4", "m2", "m0"]);
    expect(await pageThrough(b, "name")).toEqual(["m1", "m3"]);
    expect(names((await a.models.listModels({ provider: "mod-a", visibility: ModelVisibility.PUBLIC })).models)).toEqual(["models/mod-a/m1", "models/mod-a/m3"]);
    await expectCode(b.models.getModel({ name: "models/mod-a/m0" }), Code.NotFound);
    await expectCode(b.models.updateModel({ model: { name: "models/mod-a/m1", displayName: "x" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /another project/);
    await expectCode(b.models.deleteModel({ name: "models/mod-a/m0" }), Code.NotFound);
    const upd = await a.models.updateModel({ model: { name: "models/mod-a/m0", status: ModelStatus.DEPRECATED }, updateMask: { paths: ["status"] } });
    expect(upd.model?.status).toBe(ModelStatus.DEPRECATED);
    await a.models.deleteModel({ name: "models/mod-a/m0" });
    await expectCode(a.models.getModel({ name: "models/mod-a/m0" }), Code.NotFound);
  });

  it("platform-wide models are made by the platform project and seen by all", async () => {
    const platform = await project("platform");
    const { model } = await platform.models.createModel({ modelId: "openai/gpt-test", model: { inputPriceMicrosPerMillion: 7n } });
    expect(model?.ownerProject).toBe("");
    const c = await project("plat-user");
    expect((await c.models.getModel({ name: "models/openai/gpt-test" })).model?.inputPriceMicrosPerMillion).toBe(7n);
    await expectCode(c.models.updateModel({ model: { name: "models/openai/gpt-test", inputPriceMicrosPerMillion: 0n }, updateMask: { paths: ["input_price_micros_per_million"] } }), Code.PermissionDenied, /platform model/);
  });
});

describe("roles", () => {
  it("a user cannot publish or change; a developer of A cannot change B's agent", async () => {
    const a = await project("role-a");
    await a.agents.createAgent({ agentId: "role-a-agent", agent: { visibility: AgentVisibility.PUBLIC } });
    const user = await clients("role-a", "user");
    await expectCode(user.agents.createAgent({ agentId: "nope", agent: {} }), Code.PermissionDenied, /needs role developer/);
    await expectCode(user.models.createModel({ modelId: "role-a/m", model: {} }), Code.PermissionDenied, /needs role developer/);
    await expectCode(user.agents.updateAgent({ agent: { name: "agents/role-a-agent", displayName: "x" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied);
    const b = await project("role-b");
    await expectCode(b.agents.updateAgent({ agent: { name: "agents/role-a-agent", displayName: "pwned" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /another project/);
    await expectCode(b.agents.deleteAgent({ name: "agents/role-a-agent" }), Code.PermissionDenied);
    expect((await b.agents.getAgent({ name: "agents/role-a-agent" })).agent?.displayName).toBe("");
  });
});

describe("bad input is INVALID_ARGUMENT naming the field", () => {
  beforeAll(async () => {
    await project("bad-cat");
  });
  type C = Awaited<ReturnType<typeof clients>>;
  it.each<[string, (c: C) => Promise<unknown>, RegExp]>([
    ["CreateModel bad id", (c) => c.models.createModel({ modelId: "no-slash", model: {} }), /model_id/],
    ["CreateModel negative price", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { inputPriceMicrosPerMillion: -1n } }), /input_price/],
    ["CreateModel undefined status", (c) => c.models.createModel({ modelId: "bad-cat/m", model: { status: 9 as ModelStatus } }), /status/],
    ["GetModel bad name", (c) => c.models.getModel({ name: "models/x" }), /name/],
    ["ListModels bad order", (c) => c.models.listModels({ orderBy: "price desc" }), /order_by/],
    ["ListModels oversized page", (c) => c.models.listModels({ pageSize: 1001 }), /page_size/],
    ["UpdateModel no mask", (c) => c.models.updateModel({ model: { name: "models/bad-cat/m" } }), /update_mask/],
    ["UpdateModel no name", (c) => c.models.updateModel({ model: {}, updateMask: { paths: ["display_name"] } }), /name/],
    ["DeleteModel bad name", (c) => c.models.deleteModel({ name: "bad" }), /name/],
    ["CreateAgent bad id", (c) => c.agents.createAgent({ agentId: "Bad_Id", agent: {} }), /agent_id/],
    ["CreateAgent bad price", (c) => c.agents.createAgent({ agentId: "ok", agent: { pricePerInvocationMicros: -5n } }), /price_per_invocation/],
    ["CreateAgent bad model", (c) => c.agents.createAgent({ agentId: "ok", agent: { models: ["gpt"] } }), /models/],
    ["CreateAgent shared list on private", (c) => c.agents.createAgent({ agentId: "ok2", agent: { sharedWithProjects: ["x"] } }), /shared_with_projects/],
    ["GetAgent bad name", (c) => c.agents.getAgent({ name: "agent/x" }), /name/],
    ["ListAgents bad order", (c) => c.agents.listAgents({ orderBy: "random" }), /order_by/],
    ["UpdateAgent bad mask", (c) => c.agents.updateAgent({ agent: { name: "agents/x" }, updateMask: { paths: ["owner_project"] } }), /update_mask/],
    ["DeleteAgent bad name", (c) => c.agents.deleteAgent({ name: "" }), /name/],
    ["HireAgent bad agent", (c) => c.agents.hireAgent({ parent: "accounts/bad-cat", agent: "x" }), /agent/],
    ["ReleaseAgent bad name", (c) => c.agents.releaseAgent({ name: "accounts/bad-cat/hire/x" }), /name/],
    ["ListHires bad parent", (c) => c.agents.listHires({ parent: "bad" }), /parent/],
    ["InvokeAgent no request_id", (c) => c.agents.invokeAgent({ parent: "accounts/bad-cat", target: { case: "agent", value: "agents/x" }, operation: "op" }), /request_id/],
    ["InvokeAgent no target", (c) => c.agents.invokeAgent({ parent: "accounts/bad-cat", requestId: "r", operation: "op" }), /target/],
    ["InvokeAgent negative tokens", (c) => c.agents.invokeAgent({ parent: "accounts/bad-cat", target: { case: "agent", value: "agents/x" }, requestId: "r", operation: "op", inputTokens: -1n }), /input_tokens/],
  ])("%s", async (_label, call, field) => {
    const err = await expectCode(call(await clients("bad-cat")), Code.InvalidArgument);
    expect(err.rawMessage).toMatch(field);
  });
});
