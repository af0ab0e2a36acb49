/**
 * Refunds and disputes through the Stripe webhook, with the real `stripe`
 * SDK against the fake Stripe: a refunded credit pack stops being spendable
 * (in proportion for a partial refund), a dispute takes the credits back
 * while open and returns them when won, the balance may go negative and the
 * account is then refused (payment required) until it pays; every event is
 * idempotent and late or reordered events end in Stripe's current state;
 * invoice.voided re-reads the subscription.
 */
import { Code, createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import { LimitReason, PaymentRequiredSchema } from "../../gen/formstate/v1/errors_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { FakeStripe, PRICE_PRO, deliverEvent } from "../support/fake-stripe.js";
import { serverWithFakeStripe } from "../support/stripe-server.js";
import type { TestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
let fake: FakeStripe;
let ts: TestServer;
serverWithFakeStripe(plans, (s) => ({ ts, fake } = s));

/** An account that bought a credit pack of `usd` through Checkout; returns its clients and the pack's charge. */
async function buyer(projectId: string, usd: number) {
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await admin.models.createModel({ modelId: `${projectId}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  const { sessionId } = await admin.billing.createCheckoutSession({ parent: `accounts/${projectId}`, item: { case: "creditAmountMicros", value: BigInt(usd * 1_000_000) }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
  const { charge } = fake.completeSession(sessionId);
  await admin.billing.processCheckout({ parent: `accounts/${projectId}`, sessionId });
  const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId, role: "developer" })));
  const use = (requestId: string, micros: number) => usage.recordUsage({ parent: `accounts/${projectId}`, requestId, usage: { case: "modelUsage", value: { model: `models/${projectId}/m`, inputTokens: BigInt(micros) } } });
  const balance = async () => (await admin.accounts.getAccount({ name: `accounts/${projectId}` })).account!.creditBalanceMicros;
  return { admin, use, balance, chargeId: String(charge!.id) };
}

const sumOfLedger = (p: string) => ledger.ledgerSum(ts.app.database.db, p);

describe("refunds", () => {
  it("a fully refunded pack is taken back: once, however often Stripe delivers; the account is refused until it pays", async () => {
    const { admin, use, balance, chargeId } = await buyer("refunded", 10);
    expect(await balance()).toBe(10_000_000n);
    await use("spend", 4_000_000);
    const event = fake.event("charge.refunded", fake.refund(chargeId, 1_000));
    expect((await deliverEvent(ts.url, event)).body).toMatchObject({ duplicate: false, outcome: expect.stringMatching(/taken back 10000000 \(refund\)/) });
    expect((await deliverEvent(ts.url, event)).body).toMatchObject({ duplicate: true });
    // 6 USD left minus the 10 USD pack: the balance is negative.
    expect(await balance()).toBe(-4_000_000n);
    expect(await sumOfLedger("refunded")).toBe(-4_000_000);
    const err = await expectCode(use("more", 1), Code.FailedPrecondition, /credits exhausted/);
    expect(err.findDetails(PaymentRequiredSchema)[0]).toMatchObject({ reason: LimitReason.CREDITS_EXHAUSTED, amountMicros: 4_000_001n, availableMicros: -4_000_000n });
    const refunds = (await admin.billing.listCreditTransactions({ parent: "accounts/refunded", kinds: [CreditTransactionKind.REFUND] })).creditTransactions;
    expect(refunds.map((t) => t.amountMicros)).toEqual([-10_000_000n]);
    // Paying again lets it spend again.
    await admin.billing.addCredits({ parent: "accounts/refunded", amountMicros: 5_000_000n, reason: "paid", requestId: "paid" });
    expect((await use("after", 1)).balanceMicros).toBe(999_999n);
  });

  it("partial refunds take back their share; reordered deliveries end in Stripe's state", async () => {
    const { balance, chargeId } = await buyer("partial", 20);
    const first = fake.event("charge.refunded", fake.refund(chargeId, 500)); // 5 USD
    const second = fake.event("charge.refunded", fake.refund(chargeId, 300)); // 3 USD more
    // The later event arrives first: it already sees both refunds.
    expect((await deliverEvent(ts.url, second)).status).toBe(200);
    expect(await balance()).toBe(12_000_000n);
    expect((await deliverEvent(ts.url, first)).body).toMatchObject({ duplicate: false, outcome: "applied: nothing to change" });
    expect(await balance()).toBe(12_000_000n);
  });
});

describe("disputes", () => {
  it("an open dispute takes the credits back, a won dispute returns them; created and closed in any order", async () => {
    const { admin, balance, chargeId } = await buyer("disputed", 10);
    const dispute = fake.dispute(chargeId);
    const created = fake.event("charge.dispute.created", dispute);
    expect((await deliverEvent(ts.url, created)).status).toBe(200);
    expect(await balance()).toBe(0n);
    const closed = fake.event("charge.dispute.closed", fake.closeDispute(String(dispute.id), "won"));
    expect((await deliverEvent(ts.url, closed)).status).toBe(200);
    expect(await balance()).toBe(10_000_000n);
    expect((await deliverEvent(ts.url, created)).body).toMatchObject({ duplicate: true });
    const kinds = (await admin.billing.listCreditTransactions({ parent: "accounts/disputed", kinds: [CreditTransactionKind.DISPUTE] })).creditTransactions.map((t) => t.amountMicros);
    expect(kinds.sort()).toEqual([-10_000_000n, 10_000_000n].sort());

    // Closed (lost) delivered before created: the credits stay taken back, once.
    const other = await buyer("lost", 10);
    const d2 = fake.dispute(other.chargeId);
    const createdLate = fake.event("charge.dispute.created", d2);
    const lost = fake.event("charge.dispute.closed", fake.closeDispute(String(d2.id), "lost"));
    await deliverEvent(ts.url, lost);
    await deliverEvent(ts.url, createdLate);
    expect(await other.balance()).toBe(0n);
    expect(await sumOfLedger("lost")).toBe(0);
  });

  it("a refund and a dispute of one charge never take back more than the pack", async () => {
    const { balance, chargeId } = await buyer("both", 10);
    await deliverEvent(ts.url, fake.event("charge.refunded", fake.refund(chargeId, 600)));
    await deliverEvent(ts.url, fake.event("charge.dispute.created", fake.dispute(chargeId)));
    expect(await balance()).toBe(0n);
  });
});

describe("invoice.voided", () => {
  it("re-reads the subscription from Stripe, so the plan follows it", async () => {
    const { admin } = await buyer("voided", 1);
    const customer = (await ts.app.database.db.selectFrom("billing_customer").select("stripe_customer_id").where("project_id", "=", "voided").executeTakeFirstOrThrow()).stripe_customer_id;
    const sub = fake.createSubscription(customer, PRICE_PRO);
    await deliverEvent(ts.url, fake.event("customer.subscription.created", sub));
    expect((await admin.accounts.getAccount({ name: "accounts/voided" })).account?.planTier).toBe(PlanTier.PRO);
    fake.updateSubscription(String(sub.id), { status: "canceled" });
    const invoice = { id: "in_voided", object: "invoice", customer, status: "void", parent: { subscription_details: { subscription: sub.id } } };
    expect((await deliverEvent(ts.url, fake.event("invoice.voided", invoice))).body).toMatchObject({ outcome: expect.stringMatching(/^applied: canceled/) });
    expect((await admin.accounts.getAccount({ name: "accounts/voided" })).account?.planTier).toBe(PlanTier.FREE);
  });
});
