/**
 * The books reconcile, as a finance team would check them: after a random mix
 * of grants, credit-pack purchases (real Checkout through the fake Stripe),
 * usage, holds (settled, released, expired), refunds and disputes (webhooks),
 * on a prepaid plan or one billed in arrears:
 * - Σ ledger = balance (and no refused call left a trace);
 * - Σ reports = Σ records (summary and timeseries totals = the records listed
 *   = the usage debits of the ledger);
 * - Σ metered to Stripe = the invoicing rule applied to the records (each
 *   usage debit's overage at its place in the ledger), sent once each.
 * And a test-mode project (docs/test-mode.md) under the same random grants,
 * usage and holds, by a user, a key and the platform's admin in turn:
 * Σ sandbox ledger = sandbox balance, Σ reports = Σ records, its live ledger
 * empty, nothing metered to Stripe, every purchase refused.
 * fast-check prints the seed of a failing run; FC_SEED replays it.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaymentRequiredSchema } from "../../gen/formstate/v1/errors_pb.js";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { UsageGranularity, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { invoicedPart } from "../../src/billing/invoicing.js";
import { meterIdentifier } from "../../src/billing/outbox.js";
import { createFormstateClient } from "../../src/client/node.js";
import { ManualClock } from "../../src/clock.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { DAY_MS } from "../../src/usage/period.js";
import { FakeStripe, deliverEvent } from "../support/fake-stripe.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: p.id === "free" ? 2_000 : 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
const clock = new ManualClock(Date.now());
let fake: FakeStripe;
let ts: TestServer;

beforeAll(async () => {
  fake = await FakeStripe.start();
  ts = await startTestServer(fake.env({ STRIPE_METER_INTERVAL_MS: "600000" }), { clock, plans });
});
afterAll(async () => {
  await ts?.close();
  await fake?.close();
});

type Op =
  | { t: "grant"; micros: number }
  | { t: "purchase"; cents: number }
  | { t: "use"; tokens: number }
  | { t: "hold"; estimate: number; then: "settle" | "release" | "expire"; tokens: number }
  | { t: "refund"; which: number; cents: number }
  | { t: "dispute"; which: number; outcome: "open" | "won" | "lost" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant("grant" as const), micros: fc.integer({ min: 1, max: 3_000_000 }) }),
  fc.record({ t: fc.constant("purchase" as const), cents: fc.integer({ min: 100, max: 300 }) }),
  { arbitrary: fc.record({ t: fc.constant("use" as const), tokens: fc.integer({ min: 0, max: 40_000 }) }), weight: 3 },
  fc.record({ t: fc.constant("hold" as const), estimate: fc.integer({ min: 1, max: 3_000_000 }), then: fc.constantFrom("settle" as const, "release" as const, "expire" as const), tokens: fc.integer({ min: 0, max: 40_000 }) }),
  fc.record({ t: fc.constant("refund" as const), which: fc.nat(), cents: fc.integer({ min: 1, max: 300 }) }),
  fc.record({ t: fc.constant("dispute" as const), which: fc.nat(), outcome: fc.constantFrom("open" as const, "won" as const, "lost" as const) }),
);

let run = 0;

async function scenario(arrears: boolean, ops: Op[]): Promise<void> {
  const p = `recon-${run++}`;
  const parent = `accounts/${p}`;
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: p, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  if (arrears) {
    await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", p).execute();
    ts.app.accounts.invalidatePlan(p);
  }
  // 100 micro-USD per token: 40,000 tokens cost 4 USD, more than a pack.
  await admin.models.createModel({ modelId: `${p}/m`, model: { inputPriceMicrosPerMillion: 100_000_000n } });
  const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId: p, role: "developer" })));
  const buy = async (cents: number) => {
    const { sessionId } = await admin.billing.createCheckoutSession({ parent, item: { case: "creditAmountMicros", value: BigInt(cents * 10_000) }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
    const { charge } = fake.completeSession(sessionId);
    await admin.billing.processCheckout({ parent, sessionId });
    return String(charge!.id);
  };
  const charges: string[] = [];
  // The Stripe customer exists from the start (a first purchase), so every overage can be metered.
  charges.push(await buy(100));
  const refused = (err: unknown) => {
    const ce = ConnectError.from(err);
    if (ce.code !== Code.FailedPrecondition || ce.findDetails(PaymentRequiredSchema).length === 0) throw err;
  };
  for (const [n, op] of ops.entries()) {
    const id = `op-${n}`;
    const model = { case: "modelUsage" as const, value: { model: `models/${p}/m`, inputTokens: 0n } };
    if (op.t === "grant") await admin.billing.addCredits({ parent, amountMicros: BigInt(op.micros), reason: "test", requestId: id });
    else if (op.t === "purchase") charges.push(await buy(op.cents));
    else if (op.t === "use") await usage.recordUsage({ parent, requestId: id, usage: { ...model, value: { ...model.value, inputTokens: BigInt(op.tokens) } } }).catch(refused);
    else if (op.t === "hold") {
      const hold = await usage.authorizeUsage({ parent, requestId: `${id}-hold`, ttl: { seconds: 2n }, estimate: { case: "estimatedCostMicros", value: BigInt(op.estimate) } }).catch(refused);
      if (!hold) continue;
      if (op.then === "settle") await usage.recordUsage({ parent, requestId: id, authorization: hold.authorization!.name, usage: { ...model, value: { ...model.value, inputTokens: BigInt(op.tokens) } } });
      else if (op.then === "release") await usage.releaseAuthorization({ name: hold.authorization!.name });
      else clock.advance(2_001);
    } else if (op.t === "refund") {
      const charge = charges[op.which % charges.length];
      const state = fake.charges.get(charge)!;
      if (Number(state.amount_refunded) >= Number(state.amount)) continue;
      expect((await deliverEvent(ts.url, fake.event("charge.refunded", fake.refund(charge, op.cents)))).status).toBe(200);
    } else {
      const charge = charges[op.which % charges.length];
      const dispute = fake.dispute(charge);
      expect((await deliverEvent(ts.url, fake.event("charge.dispute.created", dispute))).status).toBe(200);
      if (op.outcome !== "open") expect((await deliverEvent(ts.url, fake.event("charge.dispute.closed", fake.closeDispute(String(dispute.id), op.outcome)))).status).toBe(200);
    }
  }
  clock.advance(10_000); // every hold has expired; readers see their credits back

  // Σ ledger = balance.
  const balance = (await admin.accounts.getAccount({ name: parent })).account!.creditBalanceMicros;
  const db = ts.app.database.db;
  expect(await ledger.ledgerSum(db, p)).toBe(Number(balance));
  const entries = await db.selectFrom("credit_transaction").selectAll().where("project_id", "=", p).orderBy("seq").execute();
  let running = 0;
  for (const e of entries) {
    running += Number(e.amount_micros);
    expect(Number(e.balance_after_micros)).toBe(running);
  }

  // Σ reports = Σ records = Σ usage debits.
  const records = [];
  let pageToken = "";
  do {
    const page = await usage.listUsageRecords({ parent, pageSize: 100, pageToken });
    records.push(...page.usageRecords);
    pageToken = page.nextPageToken;
  } while (pageToken);
  const recordSum = records.reduce((a, r) => a + Number(r.costMicros), 0);
  const debits = entries.filter((e) => e.kind === "usage_debit");
  expect(debits.length).toBe(records.length);
  expect(debits.reduce((a, e) => a - Number(e.amount_micros), 0)).toBe(recordSum);
  const start = clock.now() - DAY_MS;
  const end = clock.now() + 1;
  const summary = await usage.getUsageSummary({ parent, startTime: timestampFromMs(start), endTime: timestampFromMs(end) });
  expect(Number(summary.totals!.costMicros)).toBe(recordSum);
  expect(Number(summary.totals!.requests)).toBe(records.length);
  const series = await usage.getUsageTimeseries({ parent, granularity: UsageGranularity.HOUR, startTime: timestampFromMs(start), endTime: timestampFromMs(end) });
  expect(series.points.reduce((a, x) => a + Number(x.costMicros), 0)).toBe(recordSum);

  // Σ metered = the invoicing rule applied to the records, at their place in the ledger; each sent once.
  const expected = new Map<string, number>();
  for (const d of debits) {
    const cost = -Number(d.amount_micros);
    const part = invoicedPart({ overdraftAllowed: arrears, balanceBefore: Number(d.balance_after_micros) + cost, cost });
    if (part > 0) expected.set(meterIdentifier(d.usage_record_id!), part);
  }
  const outbox = await db.selectFrom("meter_outbox").select(["identifier", "value_micros"]).where("project_id", "=", p).execute();
  expect(new Map(outbox.map((r) => [r.identifier, Number(r.value_micros)]))).toEqual(expected);
  while ((await ts.app.billing.meter!.pass()) > 0);
  for (const [identifier, value] of expected) expect(fake.accepted.get(identifier)).toMatchObject({ count: 1, value: String(value) });
  // The invoiced amounts left the balance: a prepaid account is never invoiced.
  const invoiced = entries.filter((e) => e.kind === "invoiced").reduce((a, e) => a + Number(e.amount_micros), 0);
  expect(invoiced).toBe([...expected.values()].reduce((a, v) => a + v, 0));
  if (!arrears) expect(invoiced).toBe(0);
}

/** The same money movements in a test-mode project: everything in the sandbox, nothing live, nothing to Stripe. */
async function testModeScenario(arrears: boolean, ops: Op[]): Promise<void> {
  const p = `recon-test-${run++}`;
  const parent = `accounts/${p}`;
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: p, role: "admin" }) });
  await admin.accounts.createAccount({ account: { environment: KeyEnvironment.TEST } });
  if (arrears) {
    await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", p).execute();
    ts.app.accounts.invalidatePlan(p);
  }
  await admin.models.createModel({ modelId: `${p}/m`, model: { inputPriceMicrosPerMillion: 100_000_000n } });
  // Every kind of caller takes turns: a user (JWT), a key made without naming an environment, the platform's admin.
  const byUser = createClient(UsageService, ts.grpc(await ts.token({ projectId: p, role: "developer" })));
  const key = await admin.apiKeys.createApiKey({ parent, apiKey: { scopes: [Scope.READ, Scope.WRITE] } });
  expect(key.secret.startsWith("fs_test_")).toBe(true);
  const byKey = createClient(UsageService, ts.grpc(key.secret));
  const platform = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: "platform", role: "admin" }) });
  const refused = (err: unknown) => {
    const ce = ConnectError.from(err);
    if (ce.code !== Code.FailedPrecondition || ce.findDetails(PaymentRequiredSchema).length === 0) throw err;
  };
  const sentBefore = fake.accepted.size;
  for (const [n, op] of ops.entries()) {
    const id = `op-${n}`;
    const model = { case: "modelUsage" as const, value: { model: `models/${p}/m`, inputTokens: 0n } };
    const usage = n % 2 === 0 ? byUser : byKey;
    if (op.t === "grant") await (n % 2 === 0 ? admin : platform).billing.addCredits({ parent, amountMicros: BigInt(op.micros), reason: "test", requestId: id });
    else if (op.t === "purchase") {
      const buy = admin.billing.createCheckoutSession({ parent, item: { case: "creditAmountMicros", value: BigInt(op.cents * 10_000) }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
      await expect(buy).rejects.toMatchObject({ code: Code.FailedPrecondition });
    } else if (op.t === "use") await usage.recordUsage({ parent, requestId: id, usage: { ...model, value: { ...model.value, inputTokens: BigInt(op.tokens) } } }).catch(refused);
    else if (op.t === "hold") {
      const hold = await usage.authorizeUsage({ parent, requestId: `${id}-hold`, ttl: { seconds: 2n }, estimate: { case: "estimatedCostMicros", value: BigInt(op.estimate) } }).catch(refused);
      if (!hold) continue;
      if (op.then === "settle") await usage.recordUsage({ parent, requestId: id, authorization: hold.authorization!.name, usage: { ...model, value: { ...model.value, inputTokens: BigInt(op.tokens) } } });
      else if (op.then === "release") await usage.releaseAuthorization({ name: hold.authorization!.name });
      else clock.advance(2_001);
    }
    // Refunds and disputes need a real payment: a test-mode project never has one.
  }
  clock.advance(10_000);

  const account = (await admin.accounts.getAccount({ name: parent })).account!;
  expect(account.environment).toBe(KeyEnvironment.TEST);
  expect(account.creditBalanceMicros).toBe(0n);
  const db = ts.app.database.db;
  expect(await db.selectFrom("credit_transaction").select("tx_id").where("project_id", "=", p).where("environment", "=", "live").execute()).toEqual([]);
  expect(await ledger.ledgerSum(db, p, "test")).toBe(Number(account.testCreditBalanceMicros));
  const entries = await db.selectFrom("credit_transaction").selectAll().where("project_id", "=", p).orderBy("seq").execute();
  let running = 0;
  for (const e of entries) {
    running += Number(e.amount_micros);
    expect(Number(e.balance_after_micros)).toBe(running);
  }
  const records = (await byUser.listUsageRecords({ parent, pageSize: 1000 })).usageRecords;
  expect(records.every((r) => r.environment === KeyEnvironment.TEST)).toBe(true);
  const recordSum = records.reduce((a, r) => a + Number(r.costMicros), 0);
  const debits = entries.filter((e) => e.kind === "usage_debit");
  expect(debits.length).toBe(records.length);
  expect(debits.reduce((a, e) => a - Number(e.amount_micros), 0)).toBe(recordSum);
  const summary = await byKey.getUsageSummary({ parent, startTime: timestampFromMs(clock.now() - DAY_MS), endTime: timestampFromMs(clock.now() + 1) });
  expect(Number(summary.totals!.costMicros)).toBe(recordSum);
  expect(Number(summary.totals!.requests)).toBe(records.length);
  // Nothing metered, nothing sent to Stripe, nothing invoiced.
  expect(await db.selectFrom("meter_outbox").select("identifier").where("project_id", "=", p).execute()).toEqual([]);
  while ((await ts.app.billing.meter!.pass()) > 0);
  expect(fake.accepted.size).toBe(sentBefore);
  expect(entries.filter((e) => e.kind === "invoiced")).toEqual([]);
}

describe("reconciliation", () => {
  it("a test-mode project: Σ sandbox ledger = sandbox balance, Σ reports = Σ records, nothing live, nothing to Stripe", async () => {
    await fc.assert(fc.asyncProperty(fc.boolean(), fc.array(opArb, { minLength: 1, maxLength: 20 }), testModeScenario), {
      numRuns: Number(process.env.FC_RUNS ?? 6),
      seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined,
      endOnFailure: true,
    });
  }, 300_000);

  it("Σ ledger = balance, Σ reports = Σ records, Σ metered = the invoicing rule, after random money movements", async () => {
    await fc.assert(fc.asyncProperty(fc.boolean(), fc.array(opArb, { minLength: 1, maxLength: 20 }), scenario), {
      numRuns: Number(process.env.FC_RUNS ?? 8),
      seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined,
      endOnFailure: true,
    });
  }, 300_000);
});
