/**
 * Test mode for real: usage recorded with an `fs_test_` key goes to the
 * project's sandbox ledger (free sandbox credits, its own balance, sequence
 * and idempotency keys), is never reported to Stripe, and never shows up in
 * live reports; a live key beside it is unaffected. Against a real server,
 * real keys, the real `stripe` SDK and the fake Stripe; on SQLite, and on
 * PostgreSQL under `npm run test:pg`.
 */
import { Code, createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { UsageGranularity, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createFormstateClient } from "../../src/client/node.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { HOUR_MS } from "../../src/usage/period.js";
import { expectCode } from "../support/expect-error.js";
import { FakeStripe } from "../support/fake-stripe.js";
import { serverWithFakeStripe } from "../support/stripe-server.js";
import type { TestServer } from "../support/test-server.js";

const SANDBOX = 1_000_000; // 1 USD of sandbox credits a month
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, sandboxCreditsMicros: SANDBOX })));
let fake: FakeStripe;
let ts: TestServer;
serverWithFakeStripe(plans, (s) => ({ ts, fake } = s));

/** A project on a plan billed in arrears (so live overage is metered), with a Stripe customer, 1,000 live micro-USD, and a live and a test key. */
async function project(id: string) {
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", id).execute();
  ts.app.accounts.invalidatePlan(id);
  await admin.billing.addCredits({ parent: `accounts/${id}`, amountMicros: 1_000n, reason: "test", requestId: "seed" });
  // 1 micro-USD per input token.
  await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  await admin.billing.createCheckoutSession({ parent: `accounts/${id}`, item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
  const liveKey = await admin.apiKeys.createApiKey({ parent: `accounts/${id}`, apiKey: { scopes: [Scope.READ, Scope.WRITE], environment: KeyEnvironment.LIVE } });
  const testKey = await admin.apiKeys.createApiKey({ parent: `accounts/${id}`, apiKey: { scopes: [Scope.READ, Scope.WRITE], environment: KeyEnvironment.TEST } });
  expect(testKey.secret.startsWith("fs_test_")).toBe(true);
  const live = createFormstateClient({ baseUrl: ts.url, apiKey: liveKey.secret });
  const test = createFormstateClient({ baseUrl: ts.url, apiKey: testKey.secret });
  const use = (client: typeof live, requestId: string, tokens: number) =>
    client.usage.recordUsage({ parent: `accounts/${id}`, requestId, usage: { case: "modelUsage", value: { model: `models/${id}/m`, inputTokens: BigInt(tokens) } } });
  const outbox = async () => (await ts.app.database.db.selectFrom("meter_outbox").select("value_micros").where("project_id", "=", id).execute()).map((r) => Number(r.value_micros));
  const balances = async () => {
    const a = (await admin.accounts.getAccount({ name: `accounts/${id}` })).account!;
    return { live: a.creditBalanceMicros, test: a.testCreditBalanceMicros };
  };
  return { admin, live, test, use, outbox, balances, secrets: { live: liveKey.secret, test: testKey.secret } };
}

describe("test mode", () => {
  it("a test key spends sandbox credits, never live ones, and is never metered to Stripe", async () => {
    const p = await project("tm-spend");
    expect(await p.balances()).toEqual({ live: 1_000n, test: 0n });
    // The sandbox is topped up on first test-mode use.
    const first = await p.use(p.test, "r1", 600);
    expect(first.balanceMicros).toBe(BigInt(SANDBOX - 600));
    expect(await p.balances()).toEqual({ live: 1_000n, test: BigInt(SANDBOX - 600) });
    // Past the sandbox balance on a plan billed in arrears: live usage like this would be metered; test usage never is.
    const over = await p.use(p.test, "r2", 2_000_000);
    expect(over.balanceMicros).toBe(BigInt(SANDBOX - 600 - 2_000_000));
    expect(await p.outbox()).toEqual([]);
    // The live key beside it: live credits pay first, only its overage is metered.
    const liveUse = await p.use(p.live, "r3", 1_500);
    expect(liveUse.balanceMicros).toBe(0n);
    expect(await p.outbox()).toEqual([500]);
    expect(await p.balances()).toEqual({ live: 0n, test: BigInt(SANDBOX - 600 - 2_000_000) });
    // Each ledger sums to its own balance.
    const db = ts.app.database.db;
    expect(await ledger.ledgerSum(db, "tm-spend", "live")).toBe(0);
    expect(await ledger.ledgerSum(db, "tm-spend", "test")).toBe(SANDBOX - 600 - 2_000_000);
    // What the sender reports to Stripe is the live overage alone.
    await ts.app.billing.meter!.pass();
    const customer = (await db.selectFrom("billing_customer").select("stripe_customer_id").where("project_id", "=", "tm-spend").executeTakeFirstOrThrow()).stripe_customer_id;
    expect([...fake.accepted.values()].filter((e) => e.customer === customer).map((e) => Number(e.value))).toEqual([500]);
  });

  it("live reports and listings leave test usage out; test mode shows it, and a key reads only its own environment", async () => {
    const p = await project("tm-reports");
    await p.use(p.test, "t1", 100);
    await p.use(p.test, "t2", 200);
    await p.use(p.live, "l1", 300);
    const parent = "accounts/tm-reports";
    const liveSummary = await p.admin.usage.getUsageSummary({ parent });
    expect(liveSummary.totals).toMatchObject({ requests: 1n, inputTokens: 300n, costMicros: 300n });
    const testSummary = await p.admin.usage.getUsageSummary({ parent, environment: KeyEnvironment.TEST });
    expect(testSummary.totals).toMatchObject({ requests: 2n, inputTokens: 300n, costMicros: 300n });
    // Explicit live is the default.
    expect((await p.admin.usage.getUsageSummary({ parent, environment: KeyEnvironment.LIVE })).totals).toEqual(liveSummary.totals);

    const start = timestampFromMs(Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS);
    const sum = (points: { costMicros: bigint; requests: bigint }[]) => points.reduce((a, x) => ({ cost: a.cost + x.costMicros, n: a.n + x.requests }), { cost: 0n, n: 0n });
    expect(sum((await p.admin.usage.getUsageTimeseries({ parent, startTime: start, granularity: UsageGranularity.HOUR, endTime: timestampFromMs(Date.now() + HOUR_MS) })).points)).toEqual({ cost: 300n, n: 1n });
    expect(sum((await p.admin.usage.getUsageTimeseries({ parent, startTime: start, granularity: UsageGranularity.HOUR, endTime: timestampFromMs(Date.now() + HOUR_MS), environment: KeyEnvironment.TEST })).points)).toEqual({ cost: 300n, n: 2n });

    const liveRecords = (await p.admin.usage.listUsageRecords({ parent })).usageRecords;
    expect(liveRecords.map((r) => r.requestId)).toEqual(["l1"]);
    expect(liveRecords[0].environment).toBe(KeyEnvironment.LIVE);
    const testRecords = (await p.admin.usage.listUsageRecords({ parent, environment: KeyEnvironment.TEST })).usageRecords;
    expect(testRecords.map((r) => r.requestId).sort()).toEqual(["t1", "t2"]);
    expect(testRecords.every((r) => r.environment === KeyEnvironment.TEST)).toBe(true);

    // The credits ledger listing too: the sandbox's grant and debits only in test mode.
    const liveTx = (await p.admin.billing.listCreditTransactions({ parent })).creditTransactions;
    expect(liveTx.map((t) => t.kind).sort()).toEqual([CreditTransactionKind.GRANT, CreditTransactionKind.USAGE_DEBIT].sort());
    const testTx = (await p.admin.billing.listCreditTransactions({ parent, environment: KeyEnvironment.TEST })).creditTransactions;
    expect(testTx.map((t) => t.amountMicros)).toEqual([-200n, -100n, BigInt(SANDBOX)]);
    expect(testTx[0].balanceAfterMicros).toBe(BigInt(SANDBOX - 300));

    // A test key reads test usage by default and never live; a live key never test.
    expect((await p.test.usage.getUsageSummary({ parent })).totals).toEqual(testSummary.totals);
    expect((await p.test.usage.listUsageRecords({ parent })).usageRecords).toHaveLength(2);
    await expectCode(p.test.usage.getUsageSummary({ parent, environment: KeyEnvironment.LIVE }), Code.PermissionDenied, /test API key reads only test/);
    await expectCode(p.test.billing.listCreditTransactions({ parent, environment: KeyEnvironment.LIVE }), Code.PermissionDenied, /test API key/);
    await expectCode(p.live.usage.listUsageRecords({ parent, environment: KeyEnvironment.TEST }), Code.PermissionDenied, /live API key reads only live/);
    expect((await p.live.usage.getUsageSummary({ parent })).totals).toEqual(liveSummary.totals);
    const forecast = await p.test.usage.forecastUsage({ parent });
    expect(forecast.balanceMicros).toBe(BigInt(SANDBOX - 300));
    expect(forecast.spentToDateMicros).toBe(300n);
  });

  it("request ids and idempotency keys never collide between modes", async () => {
    const p = await project("tm-ids");
    const t = await p.use(p.test, "same", 10);
    const l = await p.use(p.live, "same", 20);
    expect(t.usageRecord!.name).not.toBe(l.usageRecord!.name);
    expect(t.usageRecord!.costMicros).toBe(10n);
    expect(l.usageRecord!.costMicros).toBe(20n);
    // Each replays its own first answer and charges nothing more.
    expect((await p.use(p.test, "same", 10)).usageRecord!.name).toBe(t.usageRecord!.name);
    expect((await p.use(p.live, "same", 20)).usageRecord!.name).toBe(l.usageRecord!.name);
    await expectCode(p.use(p.test, "same", 20), Code.InvalidArgument, /request_id/);
    expect(await p.balances()).toEqual({ live: 980n, test: BigInt(SANDBOX - 10) });
    // Holds too: one request id, one hold per mode, each from its own ledger.
    const parent = "accounts/tm-ids";
    const th = await p.test.usage.authorizeUsage({ parent, requestId: "h", estimate: { case: "estimatedCostMicros", value: 50n } });
    const lh = await p.live.usage.authorizeUsage({ parent, requestId: "h", estimate: { case: "estimatedCostMicros", value: 70n } });
    expect(th.authorization!.name).not.toBe(lh.authorization!.name);
    expect(await p.balances()).toEqual({ live: 910n, test: BigInt(SANDBOX - 60) });
    // A hold is settled and released only in its own mode.
    await expectCode(
      p.live.usage.recordUsage({ parent, requestId: "settle", authorization: th.authorization!.name, usage: { case: "modelUsage", value: { model: "models/tm-ids/m", inputTokens: 5n } } }),
      Code.NotFound,
      /authorization/,
    );
    await expectCode(p.live.usage.releaseAuthorization({ name: th.authorization!.name }), Code.NotFound, /authorization/);
    const released = await p.test.usage.releaseAuthorization({ name: th.authorization!.name });
    expect(released.balanceMicros).toBe(BigInt(SANDBOX - 10));
    expect(await p.balances()).toEqual({ live: 910n, test: BigInt(SANDBOX - 10) });
    expect(await p.outbox()).toEqual([]);
  });

  it("a user (JWT) meters live; the sandbox allowance is refused like live credits on a prepaid plan", async () => {
    const p = await project("tm-prepaid");
    await ts.app.database.db.updateTable("account").set({ plan_tier: "free" }).where("project_id", "=", "tm-prepaid").execute();
    ts.app.accounts.invalidatePlan("tm-prepaid");
    const dev = createClient(UsageService, ts.grpc(await ts.token({ projectId: "tm-prepaid", role: "developer" })));
    const byUser = await dev.recordUsage({ parent: "accounts/tm-prepaid", requestId: "u", usage: { case: "modelUsage", value: { model: "models/tm-prepaid/m", inputTokens: 100n } } });
    expect(byUser.balanceMicros).toBe(900n);
    expect(await p.balances()).toEqual({ live: 900n, test: 0n });
    // Eligibility in test mode counts the month's sandbox allowance; beyond it, payment required (no overdraft on Free).
    const ok = await p.test.usage.checkEligibility({ parent: "accounts/tm-prepaid", check: { case: "modelUsage", value: { model: "models/tm-prepaid/m", inputTokens: BigInt(SANDBOX) } } });
    expect(ok).toMatchObject({ eligible: true, balanceMicros: BigInt(SANDBOX) });
    await expectCode(p.use(p.test, "too-much", SANDBOX + 1), Code.FailedPrecondition, /credits exhausted/);
    // The refusal booked nothing, not even the month's top-up; the whole allowance is still there to spend.
    expect(await p.balances()).toEqual({ live: 900n, test: 0n });
    expect((await p.use(p.test, "all", SANDBOX - 1)).balanceMicros).toBe(1n);
    expect(await p.balances()).toEqual({ live: 900n, test: 1n });
    // VerifyApiKey shows each key the balance it spends.
    const verify = async (key: string) => (await p.admin.apiKeys.verifyApiKey({ key })).creditBalanceMicros;
    expect(await verify(p.secrets.test)).toBe(1n);
    expect(await verify(p.secrets.live)).toBe(900n);
  });

  it("a test key grants only sandbox credits and never buys with real money", async () => {
    const p = await project("tm-billing");
    const admin = await p.admin.apiKeys.createApiKey({ parent: "accounts/tm-billing", apiKey: { scopes: [Scope.ADMIN], environment: KeyEnvironment.TEST } });
    const asTestAdmin = createFormstateClient({ baseUrl: ts.url, apiKey: admin.secret });
    const granted = await asTestAdmin.billing.addCredits({ parent: "accounts/tm-billing", amountMicros: 5_000n, reason: "sandbox top-up", requestId: "g" });
    expect(granted.balanceMicros).toBe(5_000n);
    expect(await p.balances()).toEqual({ live: 1_000n, test: 5_000n });
    // The same request id live is another grant (each environment keeps its own idempotency keys).
    expect((await p.admin.billing.addCredits({ parent: "accounts/tm-billing", amountMicros: 7n, reason: "live", requestId: "g" })).balanceMicros).toBe(1_007n);
    await expectCode(
      asTestAdmin.billing.createCheckoutSession({ parent: "accounts/tm-billing", item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" }),
      Code.PermissionDenied,
      /test API key cannot buy/,
    );
    await expectCode(asTestAdmin.billing.createPortalSession({ parent: "accounts/tm-billing", returnUrl: "http://localhost:3000/back" }), Code.PermissionDenied, /test API key/);
    await expectCode(asTestAdmin.billing.processCheckout({ parent: "accounts/tm-billing", sessionId: "cs_test_x" }), Code.PermissionDenied, /test API key/);
    // Nor is it paid real money: no payout account from a test key.
    await expectCode(
      asTestAdmin.billing.linkPayoutAccount({ parent: "accounts/tm-billing", refreshUrl: "http://localhost:3000/r", returnUrl: "http://localhost:3000/b" }),
      Code.PermissionDenied,
      /test API key cannot link a payout account/,
    );
    expect(await ts.app.database.db.selectFrom("payout_account").select("project_id").where("project_id", "=", "tm-billing").execute()).toEqual([]);
  });

  it("usage is attributed only to a key of the caller's environment", async () => {
    const p = await project("tm-attr");
    const keys = (await p.admin.apiKeys.listApiKeys({ parent: "accounts/tm-attr" })).apiKeys;
    const testKey = keys.find((k) => k.environment === KeyEnvironment.TEST)!.name;
    const liveKey = keys.find((k) => k.environment === KeyEnvironment.LIVE)!.name;
    const gateway = (client: typeof p.live, requestId: string, apiKey: string) =>
      client.usage.recordUsage({ parent: "accounts/tm-attr", requestId, apiKey, usage: { case: "modelUsage", value: { model: "models/tm-attr/m", inputTokens: 5n } } });
    await expectCode(gateway(p.live, "a", testKey), Code.FailedPrecondition, /is a test key and this call meters live usage/);
    await expectCode(gateway(p.test, "b", liveKey), Code.FailedPrecondition, /is a live key and this call meters test usage/);
    expect((await gateway(p.test, "c", testKey)).usageRecord!.apiKey).toBe(testKey);
    expect((await gateway(p.live, "d", liveKey)).usageRecord!.apiKey).toBe(liveKey);
    expect(await p.balances()).toEqual({ live: 995n, test: BigInt(SANDBOX - 5) });
  });
});
