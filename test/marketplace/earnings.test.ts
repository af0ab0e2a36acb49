/**
 * Revenue share booked with the consumer's debit (issue 18, items 1–2)
 * against a real server: every usage of another project's agent or model
 * splits exactly into the publisher's earning and the platform's fee, in the
 * debit's transaction; own usage and platform models earn nothing; a retried
 * request earns once; a refused call earns nothing; publishers read their
 * earnings by resource and period (GetPublisherEarnings) and nobody else can.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AgentService, AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { ApiKeyService, KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { split } from "../../src/marketplace/split.js";
import { expectCode } from "../support/expect-error.js";
import { useCatalogServer } from "../catalog/catalog-support.js";

const clock = new ManualClock(Date.UTC(2026, 6, 1, 12));
const env = useCatalogServer({}, { clock });

async function market(projectId: string, role: "admin" | "developer" | "user" = "developer") {
  return createClient(BillingService, env.ts.grpc(await env.ts.token({ projectId, role, subject: `${projectId}-${role}` })));
}

const debitsOf = async (projectId: string) => {
  const rows = await env.ts.app.database.db.selectFrom("credit_transaction").select("amount_micros").where("project_id", "=", projectId).where("kind", "=", "usage_debit").execute();
  return rows.reduce((s, r) => s - Number(r.amount_micros), 0);
};
const entriesOf = (publisher: string) => env.ts.app.database.db.selectFrom("publisher_earning").selectAll().where("publisher_project", "=", publisher).execute();

describe("earnings booked with the consumer's debit", () => {
  it("splits each invocation of another project's agent and model exactly, and nothing else", async () => {
    const pub = await env.project("er-pub", 0);
    const buyer = await env.project("er-buy", 100_000_000);
    await env.setPlan("er-buy", "pro");
    await env.setPlan("er-pub", "pro");
    // An odd price and share, so rounding matters: 70% of 1,000,003 is 700,002.1.
    await pub.models.createModel({ modelId: "er-pub/llm", model: { inputPriceMicrosPerMillion: 3_000_001n, outputPriceMicrosPerMillion: 7_000_003n, visibility: ModelVisibility.PUBLIC, publisherShareBps: 5000 } });
    await pub.agents.createAgent({ agentId: "er-agent", agent: { pricePerInvocationMicros: 1_000_003n, visibility: AgentVisibility.PUBLIC, models: ["models/er-pub/llm"] } });
    await buyer.agents.hireAgent({ parent: "accounts/er-buy", agent: "agents/er-agent" });
    // The buyer's own agent and a platform model: no earnings for anyone.
    await buyer.agents.createAgent({ agentId: "er-own", agent: { pricePerInvocationMicros: 500n } });
    await buyer.agents.hireAgent({ parent: "accounts/er-buy", agent: "agents/er-own" });
    await env.project("platform");
    await (await env.clients("platform", "admin")).models.createModel({ modelId: "er-platform/base", model: { inputPriceMicrosPerMillion: 1_000_000n } });

    const N = 7;
    let expectedGross = 0;
    let expectedPub = 0;
    for (let i = 0; i < N; i++) {
      const inv = await buyer.agents.invokeAgent({ parent: "accounts/er-buy", target: { case: "agent", value: "agents/er-agent" }, requestId: `inv-${i}`, operation: "run", inputTokens: BigInt(1000 + i), outputTokens: BigInt(333 * i) });
      const cost = Number(inv.invocation!.costMicros);
      const tokens = cost - 1_000_003;
      expectedGross += cost;
      expectedPub += split(1_000_003, 7000).publisher + split(tokens, 5000).publisher;
      clock.advance(60_000);
    }
    // A retry of an invocation earns nothing more.
    await buyer.agents.invokeAgent({ parent: "accounts/er-buy", target: { case: "agent", value: "agents/er-agent" }, requestId: "inv-0", operation: "run", inputTokens: 1000n, outputTokens: 0n });
    await buyer.agents.invokeAgent({ parent: "accounts/er-buy", target: { case: "agent", value: "agents/er-own" }, requestId: "own-1", operation: "run" });
    await buyer.usage.recordUsage({ parent: "accounts/er-buy", requestId: "plat-1", usage: { case: "modelUsage", value: { model: "models/er-platform/base", inputTokens: 1000n } } });
    // The publisher using its own agent earns nothing either.
    await pub.agents.hireAgent({ parent: "accounts/er-pub", agent: "agents/er-agent" });
    await pub.agents.invokeAgent({ parent: "accounts/er-pub", target: { case: "agent", value: "agents/er-agent" }, requestId: "self-1", operation: "run" });

    const entries = await entriesOf("er-pub");
    expect(entries.every((e) => e.kind === "earning" && e.consumer_project === "er-buy")).toBe(true);
    expect(entries).toHaveLength(2 * N);
    const sum = (k: "gross_micros" | "amount_micros" | "platform_fee_micros") => entries.reduce((s, e) => s + Number(e[k]), 0);
    // The buyer's debits for the publisher's resources = earnings + fees, to the micro-USD.
    const ownAndPlatform = 500 + 1000;
    expect(await debitsOf("er-buy")).toBe(expectedGross + ownAndPlatform);
    expect(sum("gross_micros")).toBe(expectedGross);
    expect(sum("amount_micros")).toBe(expectedPub);
    expect(sum("amount_micros") + sum("platform_fee_micros")).toBe(expectedGross);
    expect(await env.ts.app.database.db.selectFrom("publisher_earning").select("entry_id").where("publisher_project", "in", ["er-buy", "platform"]).execute()).toEqual([]);

    // The publisher reads them, by resource and period.
    const dev = await market("er-pub");
    const all = await dev.getPublisherEarnings({ parent: "accounts/er-pub" });
    expect(all.total).toMatchObject({ grossMicros: BigInt(expectedGross), earningsMicros: BigInt(expectedPub), platformFeeMicros: BigInt(expectedGross - expectedPub), clawbackMicros: 0n, usageCount: BigInt(N) });
    expect(all.resources.map((r) => r.resource).sort()).toEqual(["agents/er-agent", "models/er-pub/llm"]);
    const agentLine = all.resources.find((r) => r.resource === "agents/er-agent")!.total!;
    expect(agentLine).toMatchObject({ grossMicros: BigInt(N * 1_000_003), earningsMicros: BigInt(N * 700_002), usageCount: BigInt(N) });
    expect(all.balanceMicros).toBe(BigInt(expectedPub));
    expect(all.stripeAccountId).toBe("");
    // A period: the first three invocations (one minute apart).
    const start = Date.UTC(2026, 6, 1, 12);
    const first3 = await dev.getPublisherEarnings({ parent: "accounts/er-pub", startTime: timestampFromMs(start), endTime: timestampFromMs(start + 3 * 60_000) });
    expect(first3.total?.usageCount).toBe(3n);
    expect(first3.resources.find((r) => r.resource === "agents/er-agent")?.total?.earningsMicros).toBe(3n * 700_002n);

    // Only the publisher's developers and admins; other projects learn nothing.
    await expectCode((await market("er-pub", "user")).getPublisherEarnings({ parent: "accounts/er-pub" }), Code.PermissionDenied);
    await expectCode((await market("er-buy")).getPublisherEarnings({ parent: "accounts/er-pub" }), Code.NotFound);
    expect((await (await market("er-buy")).getPublisherEarnings({ parent: "accounts/er-buy" })).total?.earningsMicros).toBe(0n);
    // Bad input: a range that ends before it starts, and a name that is not an account.
    await expectCode(dev.getPublisherEarnings({ parent: "accounts/er-pub", startTime: timestampFromMs(start + 60_000), endTime: timestampFromMs(start) }), Code.InvalidArgument);
    await expectCode(dev.getPublisherEarnings({ parent: "projects/er-pub" }), Code.InvalidArgument);
  });

  it("books nothing for test-mode (sandbox) usage", async () => {
    const pub = await env.project("er3-pub");
    await env.project("er3-buy", 10_000_000);
    await pub.agents.createAgent({ agentId: "er3-agent", agent: { pricePerInvocationMicros: 1_000n, visibility: AgentVisibility.PUBLIC } });
    const admin = await env.clients("er3-buy", "admin");
    await admin.agents.hireAgent({ parent: "accounts/er3-buy", agent: "agents/er3-agent" });
    const keys = createClient(ApiKeyService, env.ts.grpc(await env.ts.token({ projectId: "er3-buy", role: "admin", subject: "er3-buy-admin" })));
    const { secret } = await keys.createApiKey({ parent: "accounts/er3-buy", apiKey: { displayName: "test", scopes: [Scope.WRITE], environment: KeyEnvironment.TEST } });
    expect(secret.startsWith("fs_test_")).toBe(true);
    const testKey = { agents: createClient(AgentService, env.ts.grpc(secret)) };
    const inv = await testKey.agents.invokeAgent({ parent: "accounts/er3-buy", target: { case: "agent", value: "agents/er3-agent" }, requestId: "t-1", operation: "run" });
    expect(inv.invocation?.costMicros).toBe(1_000n);
    expect(await entriesOf("er3-pub")).toEqual([]);
    // The same call with a live key earns.
    await admin.agents.invokeAgent({ parent: "accounts/er3-buy", target: { case: "agent", value: "agents/er3-agent" }, requestId: "l-1", operation: "run" });
    expect((await entriesOf("er3-pub")).map((e) => Number(e.amount_micros))).toEqual([700]);
  });

  it("books nothing for a call refused for want of credits", async () => {
    const pub = await env.project("er2-pub");
    const buyer = await env.project("er2-buy", 0);
    await pub.agents.createAgent({ agentId: "er2-agent", agent: { pricePerInvocationMicros: 900_000_000n, visibility: AgentVisibility.PUBLIC } });
    await buyer.agents.hireAgent({ parent: "accounts/er2-buy", agent: "agents/er2-agent" });
    await expectCode(buyer.agents.invokeAgent({ parent: "accounts/er2-buy", target: { case: "agent", value: "agents/er2-agent" }, requestId: "x", operation: "run" }), Code.FailedPrecondition);
    expect(await entriesOf("er2-pub")).toEqual([]);
  });
});
