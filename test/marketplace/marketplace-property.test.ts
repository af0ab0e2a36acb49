/**
 * The marketplace's books balance, after random sequences of invocations,
 * model usage, own usage, purchases, refunds, disputes and payout passes
 * (with Stripe failing, refusing, or losing answers), against a real server
 * and the fake Stripe:
 * - Σ consumer debits for the publisher's resources = Σ gross of the
 *   publisher's earnings = Σ earnings + Σ platform fees, exactly; every
 *   entry (earning or clawback) is balanced: gross = earning + fee;
 * - a clawback never takes back more of a charge than it earned, and all
 *   clawbacks never more than the consumer's payments taken back;
 * - a payout never exceeds the balance it was scheduled from, is paid by
 *   exactly one transfer of its amount (or none, if refused and given
 *   back), and the balance is Σ earnings − clawbacks − payouts.
 * fast-check prints the seed of a failing run; FC_SEED replays it.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { PaymentRequiredSchema } from "../../gen/formstate/v1/errors_pb.js";
import { ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { ManualClock } from "../../src/clock.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { FakeStripe, type TransferMode, deliverEvent } from "../support/fake-stripe.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
const clock = new ManualClock(Date.now());
// Short periods: the clock must stay within Stripe's signature tolerance of real time for the webhooks.
const INTERVAL = 1_000;
const THRESHOLD = 50_000;
let fake: FakeStripe;
let ts: TestServer;

beforeAll(async () => {
  fake = await FakeStripe.start();
  ts = await startTestServer(
    fake.env({
      STRIPE_METER_INTERVAL_MS: "600000",
      FORMSTATE_PAYOUT_THRESHOLD_MICROS: String(THRESHOLD),
      FORMSTATE_PAYOUT_INTERVAL_MS: String(INTERVAL),
      FORMSTATE_PAYOUT_TICK_MS: "600000",
      FORMSTATE_PAYOUT_BACKOFF_MS: "10",
      FORMSTATE_PAYOUT_BACKOFF_MAX_MS: "100",
    }),
    { clock, plans },
  );
});
afterAll(async () => {
  await ts?.close();
  await fake?.close();
});

type Op =
  | { t: "invoke"; tokens: number }
  | { t: "model"; tokens: number }
  | { t: "own"; tokens: number }
  | { t: "purchase"; cents: number }
  | { t: "refund"; which: number; cents: number }
  | { t: "dispute"; which: number; outcome: "open" | "won" | "lost" }
  | { t: "payout"; mode: TransferMode };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant("invoke" as const), tokens: fc.integer({ min: 0, max: 20_000 }) }), weight: 4 },
  { arbitrary: fc.record({ t: fc.constant("model" as const), tokens: fc.integer({ min: 1, max: 20_000 }) }), weight: 2 },
  fc.record({ t: fc.constant("own" as const), tokens: fc.integer({ min: 1, max: 20_000 }) }),
  fc.record({ t: fc.constant("purchase" as const), cents: fc.integer({ min: 100, max: 500 }) }),
  fc.record({ t: fc.constant("refund" as const), which: fc.nat(), cents: fc.integer({ min: 1, max: 500 }) }),
  fc.record({ t: fc.constant("dispute" as const), which: fc.nat(), outcome: fc.constantFrom("open" as const, "won" as const, "lost" as const) }),
  { arbitrary: fc.record({ t: fc.constant("payout" as const), mode: fc.constantFrom<TransferMode>("ok", "ok", "fail500", "refuse", "lostAnswer") }), weight: 2 },
);

let run = 0;
/** What the runs exercised, so the property is known to have met payouts, refusals and clawbacks. */
const seen = { paid: 0, failed: 0, clawbacks: 0 };

async function scenario(shares: { agent: number; model: number }, price: number, ops: Op[]): Promise<void> {
  const n = run++;
  const pub = `mp-pub-${n}`;
  const buy = `mp-buy-${n}`;
  const pubAdmin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: pub, role: "admin" }) });
  await pubAdmin.accounts.createAccount({ account: {} });
  await pubAdmin.models.createModel({ modelId: `${pub}/llm`, model: { inputPriceMicrosPerMillion: 3_333_331n, outputPriceMicrosPerMillion: 9_999_997n, visibility: ModelVisibility.PUBLIC, publisherShareBps: shares.model } });
  await pubAdmin.agents.createAgent({ agentId: `${pub}-a`, agent: { pricePerInvocationMicros: BigInt(price), visibility: AgentVisibility.PUBLIC, models: [`models/${pub}/llm`], publisherShareBps: shares.agent } });
  const { stripeAccountId } = await pubAdmin.billing.linkPayoutAccount({ parent: `accounts/${pub}`, refreshUrl: "http://localhost:3000/r", returnUrl: "http://localhost:3000/d" });

  const parent = `accounts/${buy}`;
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: buy, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await admin.models.createModel({ modelId: `${buy}/own`, model: { inputPriceMicrosPerMillion: 7_000_000n } });
  await admin.agents.hireAgent({ parent, agent: `agents/${pub}-a` });
  const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId: buy, role: "developer" })));
  const purchase = async (cents: number) => {
    const { sessionId } = await admin.billing.createCheckoutSession({ parent, item: { case: "creditAmountMicros", value: BigInt(cents * 10_000) }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
    const { charge } = fake.completeSession(sessionId);
    await admin.billing.processCheckout({ parent, sessionId });
    return String(charge!.id);
  };
  const refused = (err: unknown) => {
    const ce = ConnectError.from(err);
    if (ce.code !== Code.FailedPrecondition || ce.findDetails(PaymentRequiredSchema).length === 0) throw err;
  };
  const charges = [await purchase(300)];
  const payouts = ts.app.marketplace.payouts!;
  for (const [i, op] of ops.entries()) {
    const id = `op-${i}`;
    clock.advance(1);
    if (op.t === "invoke") {
      await admin.agents.invokeAgent({ parent, target: { case: "agent", value: `agents/${pub}-a` }, requestId: id, operation: "run", ...(op.tokens ? { inputTokens: BigInt(op.tokens), outputTokens: BigInt(op.tokens >> 1) } : {}) }).catch(refused);
    } else if (op.t === "model" || op.t === "own") {
      const model = op.t === "model" ? `models/${pub}/llm` : `models/${buy}/own`;
      await usage.recordUsage({ parent, requestId: id, usage: { case: "modelUsage", value: { model, inputTokens: BigInt(op.tokens) } } }).catch(refused);
    } else if (op.t === "purchase") {
      charges.push(await purchase(op.cents));
    } else if (op.t === "refund") {
      const charge = charges[op.which % charges.length];
      const state = fake.charges.get(charge)!;
      if (Number(state.amount_refunded) >= Number(state.amount)) continue;
      expect((await deliverEvent(ts.url, fake.event("charge.refunded", fake.refund(charge, op.cents)))).status).toBe(200);
    } else if (op.t === "dispute") {
      const dispute = fake.dispute(charges[op.which % charges.length]);
      expect((await deliverEvent(ts.url, fake.event("charge.dispute.created", dispute))).status).toBe(200);
      if (op.outcome !== "open") expect((await deliverEvent(ts.url, fake.event("charge.dispute.closed", fake.closeDispute(String(dispute.id), op.outcome)))).status).toBe(200);
    } else {
      clock.advance(INTERVAL);
      fake.transferMode = op.mode;
      await payouts.pass();
    }
  }
  // Stripe recovers: every pending payout is sent (refused ones were given back already).
  fake.transferMode = "ok";
  for (let i = 0; i < 5; i++) {
    clock.advance(1_000);
    await payouts.send();
  }

  const db = ts.app.database.db;
  const records = await db.selectFrom("usage_record").selectAll().where("project_id", "=", buy).execute();
  const theirs = records.filter((r) => r.agent === `agents/${pub}-a` || r.model === `models/${pub}/llm`);
  const entries = await db.selectFrom("publisher_earning").selectAll().where("publisher_project", "=", pub).orderBy("create_time").execute();
  const sum = (rows: typeof entries, k: "gross_micros" | "amount_micros" | "platform_fee_micros") => rows.reduce((s, e) => s + Number(e[k]), 0);
  const earnings = entries.filter((e) => e.kind === "earning");
  const clawbacks = entries.filter((e) => e.kind === "clawback");

  // Σ consumer debits for the publisher's resources = Σ earnings + Σ fees, exactly.
  const debits = await db.selectFrom("credit_transaction").select(["amount_micros", "usage_record_id"]).where("project_id", "=", buy).where("kind", "=", "usage_debit").execute();
  const theirIds = new Set(theirs.map((r) => r.record_id));
  const theirDebits = debits.filter((d) => theirIds.has(d.usage_record_id!)).reduce((s, d) => s - Number(d.amount_micros), 0);
  expect(sum(earnings, "gross_micros")).toBe(theirDebits);
  expect(sum(earnings, "amount_micros") + sum(earnings, "platform_fee_micros")).toBe(theirDebits);
  for (const e of [...earnings, ...clawbacks]) expect(Number(e.amount_micros) + Number(e.platform_fee_micros)).toBe(Number(e.gross_micros));
  // Own usage earns nobody anything.
  expect(await db.selectFrom("publisher_earning").select("entry_id").where("publisher_project", "=", buy).execute()).toEqual([]);

  // Clawbacks: never more of a charge than it earned, never more than the payments taken back.
  for (const e of earnings) {
    const mine = clawbacks.filter((c) => c.earning_entry_id === e.entry_id);
    expect(-sum(mine, "gross_micros")).toBeLessThanOrEqual(Number(e.gross_micros));
    expect(-sum(mine, "amount_micros")).toBeLessThanOrEqual(Number(e.amount_micros));
    expect(sum(mine, "amount_micros")).toBeLessThanOrEqual(0);
  }
  const takenBack = await db.selectFrom("credit_transaction").select("amount_micros").where("project_id", "=", buy).where("kind", "in", ["refund", "dispute"]).execute();
  const takenTotal = takenBack.filter((t) => Number(t.amount_micros) < 0).reduce((s, t) => s - Number(t.amount_micros), 0);
  expect(-sum(clawbacks, "gross_micros")).toBeLessThanOrEqual(takenTotal);

  // Payouts: never above the balance they came from; one transfer each; the balance adds up.
  let running = 0;
  for (const e of entries) {
    if (e.kind === "payout") {
      expect(-Number(e.amount_micros)).toBeLessThanOrEqual(running);
      expect(-Number(e.amount_micros)).toBeGreaterThanOrEqual(THRESHOLD - 10_000);
    }
    running += Number(e.amount_micros);
  }
  const rows = await db.selectFrom("payout").selectAll().where("publisher_project", "=", pub).execute();
  const transfers = [...fake.transfers.values()].filter((t) => t.destination === stripeAccountId);
  const paid = rows.filter((r) => r.status === "paid");
  expect(rows.filter((r) => r.status === "pending")).toEqual([]);
  expect(transfers.length).toBe(paid.length);
  expect(new Set(transfers.map((t) => t.id))).toEqual(new Set(paid.map((r) => r.stripe_transfer_id)));
  for (const r of paid) expect(transfers.find((t) => t.id === r.stripe_transfer_id)?.amount).toBe(Number(r.amount_micros) / 10_000);
  seen.paid += paid.length;
  seen.failed += rows.filter((r) => r.status === "failed").length;
  seen.clawbacks += clawbacks.length;
  const paidTotal = paid.reduce((s, r) => s + Number(r.amount_micros), 0);
  const earned = sum(earnings, "amount_micros") + sum(clawbacks, "amount_micros");
  const read = await pubAdmin.billing.getPublisherEarnings({ parent: `accounts/${pub}` });
  expect(Number(read.balanceMicros)).toBe(earned - paidTotal);
  expect(Number(read.total!.earningsMicros)).toBe(earned);
  expect(Number(read.paidOutMicros)).toBe(paidTotal);
}

describe("marketplace books", () => {
  it("Σ debits = Σ earnings + Σ fees; clawbacks and payouts never exceed what was earned", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ agent: fc.integer({ min: 0, max: 8000 }), model: fc.integer({ min: 0, max: 8000 }) }),
        fc.integer({ min: 1, max: 900_001 }),
        fc.array(opArb, { minLength: 1, maxLength: 18 }),
        scenario,
      ),
      { numRuns: Number(process.env.FC_RUNS ?? 8), seed: Number(process.env.FC_SEED ?? 4), endOnFailure: true },
    );
    // The default seed's runs meet every path the invariants are about.
    if (!process.env.FC_SEED) expect(Math.min(seen.paid, seen.failed, seen.clawbacks)).toBeGreaterThan(0);
  }, 300_000);
});
