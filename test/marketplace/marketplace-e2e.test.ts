/**
 * The marketplace pays its publishers, end to end (issue 18, "must show"),
 * with a real server, the real `stripe` SDK and the fake Stripe:
 * a consumer buys credits through Checkout and invokes a publisher's agent N
 * times -> the exact split in both ledgers; the publisher links a Connect
 * account and its earnings are paid by one transfer, however the transfer
 * fails and retries and even when another instance (a restart) takes over;
 * a refund of the consumer's payment claws back the publisher's share of what
 * it had spent, and the negative balance is carried past the next period.
 */
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { BillingService, PayoutState } from "../../gen/formstate/v1/billing_service_pb.js";
import { App } from "../../src/app.js";
import { createFormstateClient } from "../../src/client/node.js";
import { ManualClock } from "../../src/clock.js";
import { createLogger } from "../../src/logger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { FakeStripe, deliverEvent } from "../support/fake-stripe.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

// No included credits: every micro-USD the consumer spends came from its purchase.
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
const HOUR = 3_600_000;
// Real time (Stripe signatures are checked against the clock), moved by hand.
const clock = new ManualClock(Date.now());
const PRICE = 1_234_567;
// 70% (the default share) of 1,234,567 is 864,196.9: the publisher gets 864,196, the platform 370,371.
const PUB = 864_196;
const FEE = 370_371;
const N = 10;

let fake: FakeStripe;
let ts: TestServer;

beforeAll(async () => {
  fake = await FakeStripe.start();
  ts = await startTestServer(
    fake.env({
      STRIPE_METER_INTERVAL_MS: "600000",
      FORMSTATE_PAYOUT_THRESHOLD_MICROS: "1000000",
      FORMSTATE_PAYOUT_INTERVAL_MS: String(24 * HOUR),
      // The test drives the payout passes itself.
      FORMSTATE_PAYOUT_TICK_MS: "600000",
      FORMSTATE_PAYOUT_BACKOFF_MS: "1000",
    }),
    { plans, clock },
  );
});
afterAll(async () => {
  await ts?.close();
  await fake?.close();
});

const db = () => ts.app.database.db;
const sumOf = (rows: Array<Record<string, unknown>>, k: string) => rows.reduce((s, r) => s + Number(r[k]), 0);

describe("a consumer invokes a publisher's agent; the publisher is paid once; a refund claws its share back", () => {
  it("runs the whole economy", async () => {
    // ---- the publisher and its agent, and its Connect account ----
    const pubAdmin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: "e2e-pub", role: "admin" }) });
    await pubAdmin.accounts.createAccount({ account: {} });
    await pubAdmin.agents.createAgent({ agentId: "e2e-agent", agent: { pricePerInvocationMicros: BigInt(PRICE), visibility: AgentVisibility.PUBLIC } });
    const urls = { parent: "accounts/e2e-pub", refreshUrl: "http://localhost:3000/connect/refresh", returnUrl: "http://localhost:3000/connect/done" };
    const link = await pubAdmin.billing.linkPayoutAccount(urls);
    expect(link.stripeAccountId).toMatch(/^acct_/);
    expect(link.onboardingUrl.startsWith(`${fake.url}/connect/onboarding/${link.stripeAccountId}/`)).toBe(true);
    expect(fake.accounts.get(link.stripeAccountId)?.metadata).toEqual({ formstate_project: "e2e-pub" });
    // Linking again: the same account, a fresh link.
    const again = await pubAdmin.billing.linkPayoutAccount(urls);
    expect(again.stripeAccountId).toBe(link.stripeAccountId);
    expect(fake.accounts.size).toBe(1);
    expect(fake.accountLinks).toHaveLength(2);
    await expectCode(pubAdmin.billing.linkPayoutAccount({ ...urls, returnUrl: "https://evil.example.com/x" }), Code.InvalidArgument, /^return_url:/);
    const pubDev = createClient(BillingService, ts.grpc(await ts.token({ projectId: "e2e-pub", role: "developer" })));
    await expectCode(pubDev.linkPayoutAccount(urls), Code.PermissionDenied);

    // ---- the consumer buys 20 USD of credits and invokes the agent N times ----
    const buyer = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: "e2e-buy", role: "admin" }) });
    await buyer.accounts.createAccount({ account: {} });
    const { sessionId } = await buyer.billing.createCheckoutSession({ parent: "accounts/e2e-buy", item: { case: "creditAmountMicros", value: 20_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
    const { charge } = fake.completeSession(sessionId);
    await buyer.billing.processCheckout({ parent: "accounts/e2e-buy", sessionId });
    await buyer.agents.hireAgent({ parent: "accounts/e2e-buy", agent: "agents/e2e-agent" });
    for (let i = 0; i < N; i++) {
      await buyer.agents.invokeAgent({ parent: "accounts/e2e-buy", target: { case: "agent", value: "agents/e2e-agent" }, requestId: `run-${i}`, operation: "run" });
      clock.advance(1_000);
    }
    // Retried invocations change nothing.
    await buyer.agents.invokeAgent({ parent: "accounts/e2e-buy", target: { case: "agent", value: "agents/e2e-agent" }, requestId: "run-3", operation: "run" });

    // Both ledgers: the consumer's debits = the publisher's earnings + the platform's fees, exactly.
    const debits = await db().selectFrom("credit_transaction").selectAll().where("project_id", "=", "e2e-buy").where("kind", "=", "usage_debit").execute();
    expect(debits).toHaveLength(N);
    expect(-sumOf(debits, "amount_micros")).toBe(N * PRICE);
    const earnings = await db().selectFrom("publisher_earning").selectAll().where("publisher_project", "=", "e2e-pub").execute();
    expect(earnings).toHaveLength(N);
    expect(earnings.map((e) => [Number(e.gross_micros), Number(e.amount_micros), Number(e.platform_fee_micros)])).toEqual(Array(N).fill([PRICE, PUB, FEE]));
    expect(new Set(earnings.map((e) => e.usage_record_id))).toEqual(new Set(debits.map((d) => d.usage_record_id)));
    const read = await pubDev.getPublisherEarnings({ parent: "accounts/e2e-pub" });
    expect(read.total).toMatchObject({ grossMicros: BigInt(N * PRICE), earningsMicros: BigInt(N * PUB), platformFeeMicros: BigInt(N * FEE), usageCount: BigInt(N) });
    expect(read).toMatchObject({ balanceMicros: BigInt(N * PUB), paidOutMicros: 0n, stripeAccountId: link.stripeAccountId });

    // ---- the payout: whole cents of the balance, sent once through failures, a lost answer and a restart ----
    const payouts = ts.app.marketplace.payouts!;
    // Whole cents of 8,641,960: 8,640,000 micro-USD (864 cents); the 1,960 rest stays for later.
    const amount = Math.floor((N * PUB) / 10_000) * 10_000;
    fake.transferMode = "fail500";
    expect(await payouts.pass()).toEqual({ scheduled: 1, paid: 0 });
    let [row] = await db().selectFrom("payout").selectAll().where("publisher_project", "=", "e2e-pub").execute();
    expect(row).toMatchObject({ status: "pending", attempts: 1, amount_micros: amount, stripe_account_id: link.stripeAccountId });
    expect(Number(row.next_attempt_time)).toBeGreaterThan(clock.now());
    // Not due yet: no attempt; a second pass in the same period schedules nothing more.
    expect(await payouts.pass()).toEqual({ scheduled: 0, paid: 0 });
    expect(fake.transferAttempts).toHaveLength(1);
    // The money left the balance with the scheduling: only the sub-cent rest stays.
    expect((await pubDev.getPublisherEarnings({ parent: "accounts/e2e-pub" })).balanceMicros).toBe(BigInt(N * PUB - amount));

    clock.advance(10_000);
    fake.transferMode = "lostAnswer"; // Stripe makes the transfer, the answer never arrives
    expect(await payouts.pass()).toEqual({ scheduled: 0, paid: 0 });
    expect(fake.transfers.size).toBe(1);

    // Another instance (a restart) over the same database takes over.
    await payouts.stop();
    const restarted = await App.create(ts.app.config, { plans, clock, log: createLogger("silent") });
    try {
      clock.advance(60_000);
      fake.transferMode = "ok";
      expect(await restarted.marketplace.payouts!.pass()).toEqual({ scheduled: 0, paid: 1 });
      expect(await restarted.marketplace.payouts!.pass()).toEqual({ scheduled: 0, paid: 0 });
    } finally {
      await restarted.close();
    }
    expect(fake.transfers.size).toBe(1);
    const [transfer] = [...fake.transfers.values()];
    expect(transfer).toMatchObject({ amount: amount / 10_000, currency: "usd", destination: link.stripeAccountId });
    expect(fake.transferAttempts.map((a) => a.outcome)).toEqual(["failed", "lost", "replayed"]);
    expect(new Set(fake.transferAttempts.map((a) => a.idempotencyKey)).size).toBe(1);
    [row] = await db().selectFrom("payout").selectAll().where("publisher_project", "=", "e2e-pub").execute();
    expect(row).toMatchObject({ status: "paid", attempts: 3, stripe_transfer_id: transfer.id });
    const listed = await pubDev.listPayouts({ parent: "accounts/e2e-pub" });
    expect(listed.payouts.map((p) => [p.state, p.amountMicros, p.stripeTransferId])).toEqual([[PayoutState.PAID, BigInt(amount), transfer.id]]);
    await expectCode(createClient(BillingService, ts.grpc(await ts.token({ projectId: "e2e-buy", role: "admin" }))).listPayouts({ parent: "accounts/e2e-pub" }), Code.NotFound);

    // ---- a refund of half the consumer's payment: the spent part claws back the latest invocations ----
    const chargeId = String(charge!.id);
    // Balance 20,000,000 - 12,345,670 = 7,654,330; refunding 10 USD leaves -2,345,670 unfunded:
    // the last invocation whole, and 1,111,103 of the one before.
    expect((await deliverEvent(ts.url, fake.event("charge.refunded", fake.refund(chargeId, 1_000)))).status).toBe(200);
    let claws = await db().selectFrom("publisher_earning").selectAll().where("kind", "=", "clawback").where("publisher_project", "=", "e2e-pub").execute();
    expect(-sumOf(claws, "gross_micros")).toBe(2_345_670);
    const partial = Math.floor((1_111_103 * PUB) / PRICE);
    expect(-sumOf(claws, "amount_micros")).toBe(PUB + partial);
    expect(sumOf(claws, "amount_micros") + sumOf(claws, "platform_fee_micros")).toBe(sumOf(claws, "gross_micros"));

    // The rest of the payment refunded: everything the consumer spent is unfunded, every earning taken back.
    expect((await deliverEvent(ts.url, fake.event("charge.refunded", fake.refund(chargeId, 1_000)))).status).toBe(200);
    claws = await db().selectFrom("publisher_earning").selectAll().where("kind", "=", "clawback").where("publisher_project", "=", "e2e-pub").execute();
    expect(-sumOf(claws, "gross_micros")).toBe(N * PRICE);
    expect(-sumOf(claws, "amount_micros")).toBe(N * PUB);
    expect(-sumOf(claws, "platform_fee_micros")).toBe(N * FEE);
    const after = await pubDev.getPublisherEarnings({ parent: "accounts/e2e-pub" });
    expect(after.total).toMatchObject({ grossMicros: 0n, earningsMicros: 0n, platformFeeMicros: 0n, clawbackMicros: BigInt(-N * PUB) });
    // What was paid out is now owed: carried forward, and no payout while the balance is below the threshold.
    expect(after).toMatchObject({ paidOutMicros: BigInt(amount), balanceMicros: BigInt(-amount) });
    clock.advance(24 * HOUR);
    const fresh = await App.create(ts.app.config, { plans, clock, log: createLogger("silent") });
    try {
      expect(await fresh.marketplace.payouts!.pass()).toEqual({ scheduled: 0, paid: 0 });
    } finally {
      await fresh.close();
    }
    expect(fake.transfers.size).toBe(1);
  });
});
