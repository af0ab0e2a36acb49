/**
 * Test-mode projects (issue 17, docs/test-mode.md): an account created with
 * `environment: KEY_ENVIRONMENT_TEST` is a sandbox as a whole. Every caller —
 * users signed in with a JWT and every key — meters against the sandbox
 * ledger; the live ledger stays empty; nothing reaches the Stripe meter
 * outbox, checkout, the portal or payouts; only `fs_test_` keys exist there;
 * the mode is fixed at creation; a test project neither pays publishers nor
 * is paid. Against a real server, real clients, the real `stripe` SDK and the
 * fake Stripe; on SQLite, and on PostgreSQL under `npm run test:pg`.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { UsageGranularity } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { HOUR_MS } from "../../src/usage/period.js";
import { expectCode } from "../support/expect-error.js";
import type { FakeStripe } from "../support/fake-stripe.js";
import { serverWithFakeStripe } from "../support/stripe-server.js";
import type { TestServer } from "../support/test-server.js";

const SANDBOX = 1_000_000; // 1 USD of sandbox credits a month
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, sandboxCreditsMicros: SANDBOX })));
let fake: FakeStripe;
let ts: TestServer;
serverWithFakeStripe(plans, (s) => ({ ts, fake } = s));

const urls = { successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" };

/** A client of the project signed in with a JWT of this role. */
async function user(id: string, role: "admin" | "developer" | "user" = "admin") {
  return createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role, subject: `${role}-${id}` }) });
}

/** A project in the given mode, on a plan billed in arrears (live overage would be metered to Stripe), with a model at 1 micro-USD a token. */
async function project(id: string, environment: KeyEnvironment) {
  const admin = await user(id);
  const created = (await admin.accounts.createAccount({ account: { displayName: id, environment } })).account!;
  await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", id).execute();
  ts.app.accounts.invalidatePlan(id);
  await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  const use = (client: typeof admin, requestId: string, tokens: number) =>
    client.usage.recordUsage({ parent: `accounts/${id}`, requestId, usage: { case: "modelUsage", value: { model: `models/${id}/m`, inputTokens: BigInt(tokens) } } });
  const db = ts.app.database.db;
  const outbox = async () => (await db.selectFrom("meter_outbox").select("value_micros").where("project_id", "=", id).execute()).map((r) => Number(r.value_micros));
  const liveRows = async () => (await db.selectFrom("credit_transaction").select("tx_id").where("project_id", "=", id).where("environment", "=", "live").execute()).length;
  const balances = async () => {
    const a = (await admin.accounts.getAccount({ name: `accounts/${id}` })).account!;
    return { live: a.creditBalanceMicros, test: a.testCreditBalanceMicros };
  };
  return { admin, created, use, outbox, liveRows, balances };
}

describe("test-mode projects", () => {
  it("every caller of a test project meters the sandbox; the live ledger and Stripe never see it", async () => {
    const p = await project("tmp-meter", KeyEnvironment.TEST);
    expect(p.created.environment).toBe(KeyEnvironment.TEST);
    const dev = await user("tmp-meter", "developer");
    // A user signed in with a JWT: the sandbox, topped up on first use.
    expect((await p.use(dev, "u1", 600)).balanceMicros).toBe(BigInt(SANDBOX - 600));
    // Past the sandbox on a plan billed in arrears: a live project's overage would go to Stripe; this never does.
    expect((await p.use(dev, "u2", 2_000_000)).balanceMicros).toBe(BigInt(SANDBOX - 600 - 2_000_000));
    // A key made without naming an environment is a test key here, and meters the same sandbox.
    const made = await p.admin.apiKeys.createApiKey({ parent: "accounts/tmp-meter", apiKey: { scopes: [Scope.READ, Scope.WRITE] } });
    expect(made.secret.startsWith("fs_test_")).toBe(true);
    expect(made.apiKey!.environment).toBe(KeyEnvironment.TEST);
    const key = createFormstateClient({ baseUrl: ts.url, apiKey: made.secret });
    expect((await p.use(key, "k1", 400)).balanceMicros).toBe(BigInt(SANDBOX - 1_000 - 2_000_000));
    // Holds too: taken from and returned to the sandbox.
    const hold = await dev.usage.authorizeUsage({ parent: "accounts/tmp-meter", requestId: "h", estimate: { case: "estimatedCostMicros", value: 50n } });
    expect(hold.balanceMicros).toBe(BigInt(SANDBOX - 1_050 - 2_000_000));
    expect((await dev.usage.releaseAuthorization({ name: hold.authorization!.name })).balanceMicros).toBe(BigInt(SANDBOX - 1_000 - 2_000_000));

    expect(await p.balances()).toEqual({ live: 0n, test: BigInt(SANDBOX - 1_000 - 2_000_000) });
    expect(await p.liveRows()).toBe(0);
    const db = ts.app.database.db;
    expect(await ledger.ledgerSum(db, "tmp-meter", "test")).toBe(SANDBOX - 1_000 - 2_000_000);
    expect(await p.outbox()).toEqual([]);
    await ts.app.billing.meter!.pass();
    expect([...fake.accepted.values()]).toHaveLength(0);
    // The platform's grant to a test project books into its sandbox: it has no live ledger to grant to.
    const grant = await (await user("platform")).billing.addCredits({ parent: "accounts/tmp-meter", amountMicros: 2_000_000n, reason: "sandbox", requestId: "g1" });
    expect(grant.creditTransaction!.environment).toBe(KeyEnvironment.TEST);
    expect(grant.balanceMicros).toBe(BigInt(SANDBOX - 1_000));
    expect(await p.liveRows()).toBe(0);
  });

  it("reports of a test project show test mode by default; a live project beside it is untouched", async () => {
    const t = await project("tmp-reports", KeyEnvironment.TEST);
    const l = await project("tmp-live", KeyEnvironment.UNSPECIFIED);
    expect(l.created.environment).toBe(KeyEnvironment.LIVE);
    await l.admin.billing.addCredits({ parent: "accounts/tmp-live", amountMicros: 1_000n, reason: "seed", requestId: "seed" });
    await t.use(t.admin, "a", 100);
    await t.use(t.admin, "b", 200);
    // The same user-facing call in a live project meters live, as before.
    expect((await l.use(l.admin, "a", 300)).balanceMicros).toBe(700n);
    expect(await l.balances()).toEqual({ live: 700n, test: 0n });

    const parent = "accounts/tmp-reports";
    const summary = await t.admin.usage.getUsageSummary({ parent });
    expect(summary.totals).toMatchObject({ requests: 2n, inputTokens: 300n, costMicros: 300n });
    expect((await t.admin.usage.getUsageSummary({ parent, environment: KeyEnvironment.TEST })).totals).toEqual(summary.totals);
    // Its live reports are empty: nothing of a test project is ever live.
    expect((await t.admin.usage.getUsageSummary({ parent, environment: KeyEnvironment.LIVE })).totals?.requests ?? 0n).toBe(0n);
    const records = (await t.admin.usage.listUsageRecords({ parent })).usageRecords;
    expect(records.map((r) => r.requestId).sort()).toEqual(["a", "b"]);
    expect(records.every((r) => r.environment === KeyEnvironment.TEST)).toBe(true);
    expect((await t.admin.usage.listUsageRecords({ parent, environment: KeyEnvironment.LIVE })).usageRecords).toEqual([]);
    const start = timestampFromMs(Math.floor(Date.now() / HOUR_MS) * HOUR_MS - HOUR_MS);
    const points = (await t.admin.usage.getUsageTimeseries({ parent, startTime: start, endTime: timestampFromMs(Date.now() + HOUR_MS), granularity: UsageGranularity.HOUR })).points;
    expect(points.reduce((s, x) => s + x.costMicros, 0n)).toBe(300n);
    const txs = (await t.admin.billing.listCreditTransactions({ parent })).creditTransactions;
    expect(txs.map((x) => x.kind)).toEqual([CreditTransactionKind.USAGE_DEBIT, CreditTransactionKind.USAGE_DEBIT, CreditTransactionKind.GRANT]);
    expect(txs.every((x) => x.environment === KeyEnvironment.TEST)).toBe(true);
    expect((await t.admin.billing.listCreditTransactions({ parent, environment: KeyEnvironment.LIVE })).creditTransactions).toEqual([]);
    expect((await t.admin.usage.forecastUsage({ parent })).balanceMicros).toBe(BigInt(SANDBOX - 300));
    // The live project's reports never include the test project's usage, nor the reverse.
    expect((await l.admin.usage.getUsageSummary({ parent: "accounts/tmp-live" })).totals).toMatchObject({ requests: 1n, costMicros: 300n });
  });

  it("a test project holds only fs_test_ keys: a live key is refused", async () => {
    const p = await project("tmp-keys", KeyEnvironment.TEST);
    const parent = "accounts/tmp-keys";
    await expectCode(p.admin.apiKeys.createApiKey({ parent, apiKey: { scopes: [Scope.READ], environment: KeyEnvironment.LIVE } }), Code.FailedPrecondition, /test-mode project: it can hold only fs_test_ keys/);
    const test = await p.admin.apiKeys.createApiKey({ parent, apiKey: { scopes: [Scope.READ, Scope.WRITE], environment: KeyEnvironment.TEST } });
    expect(test.secret.startsWith("fs_test_")).toBe(true);
    // A scoped key minted by a user (no parent key) is a test key too, and so is a rotated key.
    const scoped = await p.admin.apiKeys.createScopedKey({ parent, ttl: { seconds: 60n }, spendCapMicros: 1_000n, allowedMethods: ["/formstate.v1.UsageService/RecordUsage"] });
    expect(scoped.secret.startsWith("fs_test_")).toBe(true);
    const rotated = await p.admin.apiKeys.rotateApiKey({ name: test.apiKey!.name });
    expect(rotated.secret.startsWith("fs_test_")).toBe(true);
    const keys = (await p.admin.apiKeys.listApiKeys({ parent })).apiKeys;
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((k) => k.environment === KeyEnvironment.TEST)).toBe(true);
    // A live project keeps its default: live keys.
    const l = await project("tmp-keys-live", KeyEnvironment.LIVE);
    expect((await l.admin.apiKeys.createApiKey({ parent: "accounts/tmp-keys-live", apiKey: { scopes: [Scope.READ] } })).secret.startsWith("fs_live_")).toBe(true);
  });

  it("the mode is fixed at creation", async () => {
    const p = await project("tmp-fixed", KeyEnvironment.TEST);
    const name = "accounts/tmp-fixed";
    await expectCode(
      p.admin.accounts.updateAccount({ account: { name, environment: KeyEnvironment.LIVE }, updateMask: { paths: ["environment"] } }),
      Code.InvalidArgument,
      /environment is fixed when the account is created/,
    );
    await expectCode(
      p.admin.accounts.updateAccount({ account: { name, displayName: "x", environment: KeyEnvironment.LIVE }, updateMask: { paths: ["display_name", "environment"] } }),
      Code.InvalidArgument,
      /environment is fixed/,
    );
    // An environment outside the mask is ignored like any other output field.
    const updated = (await p.admin.accounts.updateAccount({ account: { name, displayName: "renamed", environment: KeyEnvironment.LIVE }, updateMask: { paths: ["display_name"] } })).account!;
    expect(updated).toMatchObject({ displayName: "renamed", environment: KeyEnvironment.TEST });
    // Creating again, in either mode, is ALREADY_EXISTS.
    await expectCode(p.admin.accounts.createAccount({ account: { environment: KeyEnvironment.LIVE } }), Code.AlreadyExists);
    expect((await p.admin.accounts.getAccount({ name })).account!.environment).toBe(KeyEnvironment.TEST);
    // A retried create answers the first one only when it asks for the same mode.
    const admin = await user("tmp-retry");
    const first = (await admin.accounts.createAccount({ account: { environment: KeyEnvironment.TEST }, requestId: "r" })).account!;
    expect((await admin.accounts.createAccount({ account: { environment: KeyEnvironment.TEST }, requestId: "r" })).account!.name).toBe(first.name);
    await expectCode(admin.accounts.createAccount({ account: { environment: KeyEnvironment.LIVE }, requestId: "r" }), Code.AlreadyExists);
    // An undefined enum value is refused by validation.
    await expectCode((await user("tmp-bad")).accounts.createAccount({ account: { environment: 7 as KeyEnvironment } }), Code.InvalidArgument);
  });

  it("no real money moves in a test project: checkout, portal, payouts refused", async () => {
    const p = await project("tmp-money", KeyEnvironment.TEST);
    const parent = "accounts/tmp-money";
    await expectCode(p.admin.billing.createCheckoutSession({ parent, item: { case: "creditAmountMicros", value: 1_000_000n }, ...urls }), Code.FailedPrecondition, /test-mode project/);
    await expectCode(p.admin.billing.processCheckout({ parent, sessionId: "cs_test_x" }), Code.FailedPrecondition, /test-mode project/);
    await expectCode(p.admin.billing.createPortalSession({ parent, returnUrl: "http://localhost:3000/back" }), Code.FailedPrecondition, /test-mode project/);
    await expectCode(p.admin.billing.linkPayoutAccount({ parent, refreshUrl: "http://localhost:3000/r", returnUrl: "http://localhost:3000/b" }), Code.FailedPrecondition, /test-mode project/);
    expect(fake.accepted.size).toBe(0);
    expect(await ts.app.database.db.selectFrom("billing_customer").select("project_id").where("project_id", "=", "tmp-money").execute()).toEqual([]);
    // A live project on the same server buys as usual.
    const l = await project("tmp-money-live", KeyEnvironment.LIVE);
    expect((await l.admin.billing.createCheckoutSession({ parent: "accounts/tmp-money-live", item: { case: "creditAmountMicros", value: 1_000_000n }, ...urls })).url).toMatch(/^http/);
  });

  it("marketplace: a test project using a live publisher's agent earns the publisher nothing, nor does a test publisher earn from live users", async () => {
    const db = ts.app.database.db;
    const earnings = async (publisher: string) => (await db.selectFrom("publisher_earning").select("amount_micros").where("publisher_project", "=", publisher).execute()).map((r) => Number(r.amount_micros));
    const livePub = await project("tmp-pub-live", KeyEnvironment.LIVE);
    const testPub = await project("tmp-pub-test", KeyEnvironment.TEST);
    await livePub.admin.agents.createAgent({ agentId: "tmp-live-agent", agent: { pricePerInvocationMicros: 1_000n, visibility: AgentVisibility.PUBLIC } });
    await testPub.admin.agents.createAgent({ agentId: "tmp-test-agent", agent: { pricePerInvocationMicros: 1_000n, visibility: AgentVisibility.PUBLIC } });

    const testBuyer = await project("tmp-buy-test", KeyEnvironment.TEST);
    await testBuyer.admin.agents.hireAgent({ parent: "accounts/tmp-buy-test", agent: "agents/tmp-live-agent" });
    const inv = await testBuyer.admin.agents.invokeAgent({ parent: "accounts/tmp-buy-test", target: { case: "agent", value: "agents/tmp-live-agent" }, requestId: "t1", operation: "run" });
    expect(inv.invocation!.costMicros).toBe(1_000n);
    expect(await testBuyer.balances()).toEqual({ live: 0n, test: BigInt(SANDBOX - 1_000) });
    expect(await earnings("tmp-pub-live")).toEqual([]);

    const liveBuyer = await project("tmp-buy-live", KeyEnvironment.LIVE);
    await liveBuyer.admin.billing.addCredits({ parent: "accounts/tmp-buy-live", amountMicros: 10_000n, reason: "seed", requestId: "s" });
    await liveBuyer.admin.agents.hireAgent({ parent: "accounts/tmp-buy-live", agent: "agents/tmp-test-agent" });
    await liveBuyer.admin.agents.hireAgent({ parent: "accounts/tmp-buy-live", agent: "agents/tmp-live-agent" });
    await liveBuyer.admin.agents.invokeAgent({ parent: "accounts/tmp-buy-live", target: { case: "agent", value: "agents/tmp-test-agent" }, requestId: "l1", operation: "run" });
    expect(await earnings("tmp-pub-test")).toEqual([]);
    // The control: the same live buyer invoking the live publisher's agent does earn it.
    await liveBuyer.admin.agents.invokeAgent({ parent: "accounts/tmp-buy-live", target: { case: "agent", value: "agents/tmp-live-agent" }, requestId: "l2", operation: "run" });
    expect(await earnings("tmp-pub-live")).toEqual([700]);

    // Payouts never include a test project, even one with a linked account and a balance written
    // behind the API's back: the scheduler pays the live publisher beside it and skips the test one.
    const now = ts.app.clock.now();
    const owed = { kind: "earning", resource: "agents/x", consumer_project: "tmp-buy-live", usage_record_id: null, payout_id: null, earning_entry_id: null, share_bps: 7000, gross_micros: 0, amount_micros: 20_000_000, platform_fee_micros: 0 };
    for (const pub of ["tmp-pub-test", "tmp-pub-live"]) {
      await db.insertInto("payout_account").values({ project_id: pub, stripe_account_id: `acct_${pub}`, create_time: now }).execute();
      await db.insertInto("publisher_earning").values({ ...owed, entry_id: `e-${pub}`, publisher_project: pub, idempotency_key: `seed:${pub}`, create_time: now }).execute();
    }
    expect(await ts.app.marketplace.payouts!.schedule()).toBe(1);
    expect((await db.selectFrom("payout").select("publisher_project").execute()).map((r) => r.publisher_project)).toEqual(["tmp-pub-live"]);
  });
});
