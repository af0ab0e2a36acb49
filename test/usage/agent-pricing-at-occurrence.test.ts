/**
 * Agents keep a price history like models: a backdated agent operation is
 * charged the per-invocation price in force at its occur_time (and its
 * tokens the model's price then); before the agent had a price,
 * INVALID_ARGUMENT naming occur_time. Reports carry what was charged.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { ManualClock } from "../../src/clock.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { DAY_MS, HOUR_MS } from "../../src/usage/period.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, agentSlots: null })));
// Behind real time, so backdated times pass protovalidate's real-clock check.
const clock = new ManualClock(Date.now() - 10 * DAY_MS);
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { clock, plans });
});
afterAll(async () => {
  await ts?.close();
});

describe("agent pricing at occurrence", () => {
  it("a backdated agent operation pays the per-invocation and token prices in force when it happened", async () => {
    const id = "apao";
    const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
    await admin.accounts.createAccount({ account: {} });
    await admin.billing.addCredits({ parent: `accounts/${id}`, amountMicros: 100_000_000n, reason: "test", requestId: "seed" });
    const t0 = clock.now();
    await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
    await admin.agents.createAgent({ agentId: "apao-a", agent: { pricePerInvocationMicros: 100n, models: [`models/${id}/m`], visibility: AgentVisibility.PRIVATE } });
    await admin.agents.hireAgent({ parent: `accounts/${id}`, agent: "agents/apao-a" });
    clock.advance(2 * HOUR_MS);
    await admin.agents.updateAgent({ agent: { name: "agents/apao-a", pricePerInvocationMicros: 700n }, updateMask: { paths: ["price_per_invocation_micros"] } });
    await admin.models.updateModel({ model: { name: `models/${id}/m`, inputPriceMicrosPerMillion: 3_000_000n }, updateMask: { paths: ["input_price_micros_per_million"] } });
    // A change of something else keeps the price history as it is.
    clock.advance(HOUR_MS);
    await admin.agents.updateAgent({ agent: { name: "agents/apao-a", description: "renamed" }, updateMask: { paths: ["description"] } });
    clock.advance(HOUR_MS);

    const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId: id, role: "developer" })));
    const op = (requestId: string, occur?: number) =>
      usage.recordUsage({
        parent: `accounts/${id}`,
        requestId,
        occurTime: occur === undefined ? undefined : timestampFromMs(occur),
        usage: { case: "agentOperation", value: { agent: "agents/apao-a", operation: "run", model: `models/${id}/m`, inputTokens: 10n } },
      });
    const old = await op("old", t0 + HOUR_MS);
    expect(old.usageRecord?.price?.pricePerInvocationMicros).toBe(100n);
    expect(old.usageRecord?.costMicros).toBe(100n + 10n);
    const atChange = await op("at-change", t0 + 2 * HOUR_MS);
    expect(atChange.usageRecord?.price?.pricePerInvocationMicros).toBe(700n);
    expect(atChange.usageRecord?.costMicros).toBe(700n + 30n);
    const current = await op("now");
    expect(current.usageRecord?.costMicros).toBe(700n + 30n);
    const afterRename = await op("after-rename", t0 + 3 * HOUR_MS + 1);
    expect(afterRename.usageRecord?.costMicros).toBe(700n + 30n);

    // Reports carry what each record was charged.
    const summary = await admin.usage.getUsageSummary({ parent: `accounts/${id}`, startTime: timestampFromMs(t0), endTime: timestampFromMs(clock.now() + 1) });
    const agentLine = summary.agents.find((a) => a.agent === "agents/apao-a")!;
    expect(agentLine).toMatchObject({ invocations: 4n, invocationCostMicros: 100n + 3n * 700n, costMicros: 110n + 3n * 730n });

    // Before the agent existed it had no price: a clear error naming occur_time, nothing charged.
    const before = await expectCode(op("before", t0 - 1), Code.InvalidArgument, /occur_time: .*no price/);
    expect(before.rawMessage).toContain("agents/apao-a");
    expect((await admin.accounts.getAccount({ name: `accounts/${id}` })).account!.creditBalanceMicros).toBe(100_000_000n - 110n - 3n * 730n);
  });
});
