/**
 * Pricing at occurrence: a backdated record is charged the model's price in
 * force at its occur_time (the catalog keeps every price a model has had),
 * within the 30-day backdating window measured by the server's clock; beyond
 * it, or before the model had a price, INVALID_ARGUMENT naming occur_time.
 * And InvokeAgent's request ids live in their own namespace: a RecordUsage
 * id never blocks or answers an invocation.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { ManualClock } from "../../src/clock.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { DAY_MS, HOUR_MS } from "../../src/usage/period.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, agentSlots: null })));
// Ten days behind real time: protovalidate's own check uses the real clock, the backdating window the server's.
const clock = new ManualClock(Date.now() - 10 * DAY_MS);
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { clock, plans });
});
afterAll(async () => {
  await ts?.close();
});

async function project(id: string) {
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await admin.billing.addCredits({ parent: `accounts/${id}`, amountMicros: 100_000_000n, reason: "test", requestId: "seed" });
  return admin;
}

describe("pricing at occurrence", () => {
  it("a backdated record is charged the price in force when it happened; now is charged today's price", async () => {
    const admin = await project("pao");
    const t0 = clock.now();
    await admin.models.createModel({ modelId: "pao/m", model: { inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 2_000_000n } });
    clock.advance(2 * HOUR_MS);
    await admin.models.updateModel({ model: { name: "models/pao/m", inputPriceMicrosPerMillion: 5_000_000n, outputPriceMicrosPerMillion: 9_000_000n }, updateMask: { paths: ["input_price_micros_per_million", "output_price_micros_per_million"] } });
    clock.advance(HOUR_MS);
    const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId: "pao", role: "developer" })));
    const rec = (requestId: string, occur?: number) =>
      usage.recordUsage({ parent: "accounts/pao", requestId, occurTime: occur === undefined ? undefined : timestampFromMs(occur), usage: { case: "modelUsage", value: { model: "models/pao/m", inputTokens: 1_000n, outputTokens: 1_000n } } });

    const old = await rec("old", t0 + HOUR_MS);
    expect(old.usageRecord?.costMicros).toBe(3_000n);
    expect(old.usageRecord?.price).toMatchObject({ inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 2_000_000n });
    const atChange = await rec("at-change", t0 + 2 * HOUR_MS);
    expect(atChange.usageRecord?.costMicros).toBe(14_000n);
    const current = await rec("now");
    expect(current.usageRecord?.costMicros).toBe(14_000n);

    const before = await expectCode(rec("before", t0 - 1), Code.InvalidArgument, /occur_time: .*no price/);
    expect(before.rawMessage).toContain("models/pao/m");
  });

  it("the backdating window is 30 days by the server's clock, and 5 minutes ahead", async () => {
    const admin = await project("window");
    await admin.models.createModel({ modelId: "window/m", model: { inputPriceMicrosPerMillion: 1_000_000n } });
    const rec = async (requestId: string, occur: number) =>
      createClient(UsageService, ts.grpc(await ts.token({ projectId: "window", role: "developer" }))).recordUsage({
        parent: "accounts/window",
        requestId,
        occurTime: timestampFromMs(occur),
        usage: { case: "modelUsage", value: { model: "models/window/m", inputTokens: 10n } },
      });
    // The server's clock is ten days behind real time: protovalidate (real clock) accepts this, the server does not.
    await expectCode(rec("ahead", clock.now() + 6 * 60_000), Code.InvalidArgument, /occur_time: must not be more than 5 minutes in the future/);
    expect((await rec("soon", clock.now() + 4 * 60_000)).usageRecord?.costMicros).toBe(10n);
    clock.advance(30 * DAY_MS);
    expect((await rec("in", clock.now() - 30 * DAY_MS + 60 * 60_000)).usageRecord?.costMicros).toBe(10n);
    // Twenty days ago by real time (protovalidate accepts), more than 30 days ago by the server's clock.
    await expectCode(rec("too-old", clock.now() - 30 * DAY_MS - 60_000), Code.InvalidArgument, /occur_time: must be within the last 30 days/);
  });
});

describe("InvokeAgent request ids", () => {
  it("live in their own namespace: a RecordUsage id like invoke:x never blocks or answers InvokeAgent x", async () => {
    const admin = await project("ns");
    await admin.models.createModel({ modelId: "ns/m", model: { inputPriceMicrosPerMillion: 1_000_000n } });
    await admin.agents.createAgent({ agentId: "ns-a", agent: { pricePerInvocationMicros: 100n, models: ["models/ns/m"], visibility: AgentVisibility.PRIVATE } });
    await admin.agents.hireAgent({ parent: "accounts/ns", agent: "agents/ns-a" });
    const dev = await ts.token({ projectId: "ns", role: "developer" });
    const usage = createClient(UsageService, ts.grpc(dev));
    const agents = createClient(AgentService, ts.grpc(dev));
    const recorded = await usage.recordUsage({ parent: "accounts/ns", requestId: "invoke:x", usage: { case: "modelUsage", value: { model: "models/ns/m", inputTokens: 7n } } });
    const inv = await agents.invokeAgent({ parent: "accounts/ns", target: { case: "agent", value: "agents/ns-a" }, requestId: "x", operation: "run" });
    expect(inv.invocation?.usageRecord).not.toBe(recorded.usageRecord?.name);
    expect(inv.invocation?.costMicros).toBe(100n);
    expect(inv.balanceMicros).toBe(100_000_000n - 7n - 100n);
    // Each namespace still replays its own id.
    const again = await agents.invokeAgent({ parent: "accounts/ns", target: { case: "agent", value: "agents/ns-a" }, requestId: "x", operation: "run" });
    expect(again.invocation?.usageRecord).toBe(inv.invocation?.usageRecord);
    const recordAgain = await usage.recordUsage({ parent: "accounts/ns", requestId: "x", usage: { case: "modelUsage", value: { model: "models/ns/m", inputTokens: 3n } } });
    expect(recordAgain.usageRecord?.name).not.toBe(inv.invocation?.usageRecord);
    expect(recordAgain.balanceMicros).toBe(100_000_000n - 110n);
  });
});
