/**
 * Billing with Stripe against a real server and the real `stripe` SDK
 * pointed at a local fake Stripe: Checkout end to end (credits and plans),
 * ProcessCheckout and the webhook granting once between them, forged and
 * foreign sessions, webhook signatures, duplicate and out-of-order events,
 * the portal, and who may do what.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { BillingService, CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { PlanTier, SubscriptionStatus } from "../../gen/formstate/v1/common_pb.js";
import * as ledger from "../../src/ledger/ledger.js";
import { monthKey } from "../../src/usage/period.js";
import { expectCode } from "../support/expect-error.js";
import { FakeStripe, PRICE_ENTERPRISE, PRICE_PRO, deliver, deliverEvent, signatureFor } from "../support/fake-stripe.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let fake: FakeStripe;
let ts: TestServer;
const OK_URL = "http://localhost:3000/billing/done";
const CANCEL_URL = "http://localhost:3000/billing";

beforeAll(async () => {
  fake = await FakeStripe.start();
  ts = await startTestServer(fake.env());
});
afterAll(async () => {
  await ts?.close();
  await fake?.close();
});

type Role = "admin" | "developer" | "user";
const billingAs = async (projectId: string, role: Role = "admin") =>
  createClient(BillingService, ts.grpc(await ts.token({ projectId, role, subject: `${projectId}-${role}` })));

/** A new account; its admin's BillingService client. */
async function account(projectId: string) {
  const token = await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` });
  await createClient(AccountService, ts.grpc(token)).createAccount({ account: { displayName: `Project ${projectId}`, billingEmail: `billing@${projectId}.example` } });
  return createClient(BillingService, ts.grpc(token));
}

type Billing = Awaited<ReturnType<typeof account>>;

async function buyCredits(b: Billing, projectId: string, micros: bigint) {
  return b.createCheckoutSession({ parent: `accounts/${projectId}`, item: { case: "creditAmountMicros", value: micros }, successUrl: OK_URL, cancelUrl: CANCEL_URL });
}

async function buyPlan(b: Billing, projectId: string, tier: PlanTier) {
  return b.createCheckoutSession({ parent: `accounts/${projectId}`, item: { case: "plan", value: tier }, successUrl: OK_URL, cancelUrl: CANCEL_URL });
}

const db = () => ts.app.database.db;
const balance = (projectId: string) => ts.app.accounts.creditBalance(projectId);
const entries = (projectId: string, kind: ledger.LedgerKind) => ledger.listEntries(db(), projectId, { kinds: [kind] }, 100);
const customerOf = async (projectId: string) => (await db().selectFrom("billing_customer").selectAll().where("project_id", "=", projectId).executeTakeFirstOrThrow()).stripe_customer_id;
const storedEvent = (eventId: string) => db().selectFrom("stripe_event").selectAll().where("event_id", "=", eventId).executeTakeFirst();

async function accountState(projectId: string) {
  const token = await ts.token({ projectId, role: "user" });
  const { account: a } = await createClient(AccountService, ts.grpc(token)).getAccount({ name: `accounts/${projectId}` });
  return { tier: a!.planTier, status: a!.subscriptionStatus, agentSlots: a!.agentSlots?.limit, unlimitedSlots: a!.agentSlots?.unlimited };
}

describe("Checkout for a credit pack", () => {
  it("create -> paid -> ProcessCheckout grants once; a second ProcessCheckout and the webhook (twice) grant nothing more", async () => {
    const b = await account("buyer");
    const created = await buyCredits(b, "buyer", 25_000_000n);
    expect(created.sessionId).toMatch(/^cs_test_[0-9a-f]{18}$/);
    expect(created.url).toBe(`${fake.url}/pay/${created.sessionId}`);
    const session = fake.sessions.get(created.sessionId)!;
    const customer = await customerOf("buyer");
    expect(fake.customers.get(customer)).toMatchObject({ name: "Project buyer", email: "billing@buyer.example", metadata: { formstate_project: "buyer" } });
    expect(session).toMatchObject({
      mode: "payment",
      customer,
      client_reference_id: "buyer",
      success_url: `${OK_URL}?session_id={CHECKOUT_SESSION_ID}`,
      cancel_url: CANCEL_URL,
      amount_total: 2500,
      metadata: { formstate_project: "buyer", formstate_kind: "credits", formstate_credit_micros: "25000000" },
    });
    expect(timestampMs(created.expireTime!)).toBe(Number(session.expires_at) * 1000);

    // Not paid yet: nothing granted.
    await expectCode(b.processCheckout({ parent: "accounts/buyer", sessionId: created.sessionId }), Code.FailedPrecondition, /not paid \(status open, payment unpaid\)/);
    fake.completeSession(created.sessionId);

    const first = await b.processCheckout({ parent: "accounts/buyer", sessionId: created.sessionId });
    expect(first).toMatchObject({ grantedCreditsMicros: 25_000_000n, alreadyProcessed: false, balanceMicros: 25_000_000n, tier: PlanTier.FREE });
    const again = await b.processCheckout({ parent: "accounts/buyer", sessionId: created.sessionId });
    expect(again).toMatchObject({ grantedCreditsMicros: 25_000_000n, alreadyProcessed: true, balanceMicros: 25_000_000n });

    const event = fake.event("checkout.session.completed", session);
    expect(await deliverEvent(ts.url, event)).toEqual({ status: 200, body: { received: true, duplicate: false, outcome: "already fulfilled" } });
    expect(await deliverEvent(ts.url, event)).toEqual({ status: 200, body: { received: true, duplicate: true, outcome: "already fulfilled" } });

    const purchases = await entries("buyer", "purchase");
    expect(purchases.map((e) => [e.amount_micros, e.idempotency_key, e.actor])).toEqual([[25_000_000, `checkout:${created.sessionId}`, "buyer-admin"]]);
    expect(await balance("buyer")).toBe(25_000_000);
    expect(await ledger.ledgerSum(db(), "buyer")).toBe(25_000_000);
    const { creditTransactions } = await b.listCreditTransactions({ parent: "accounts/buyer", kinds: [CreditTransactionKind.PURCHASE] });
    expect(creditTransactions.map((t) => t.amountMicros)).toEqual([25_000_000n]);

    // A second purchase reuses the stored customer.
    const second = await buyCredits(b, "buyer", 1_000_000n);
    expect(fake.sessions.get(second.sessionId)!.customer).toBe(customer);
    expect([...fake.customers.values()].filter((c) => (c.metadata as Record<string, string>).formstate_project === "buyer")).toHaveLength(1);
  });

  it("the webhook first: it grants; ProcessCheckout then reports it; the same event twice at once applies once", async () => {
    const b = await account("hooked");
    const { sessionId } = await buyCredits(b, "hooked", 7_000_000n);
    const { session } = fake.completeSession(sessionId);
    const event = fake.event("checkout.session.completed", session);
    const both = await Promise.all([deliverEvent(ts.url, event), deliverEvent(ts.url, event)]);
    expect(both.map((r) => r.status)).toEqual([200, 200]);
    expect(both.map((r) => r.body.duplicate).sort()).toEqual([false, true]);
    expect(both.find((r) => r.body.duplicate === false)!.body.outcome).toBe("fulfilled: 7000000 micro-USD");
    expect(await storedEvent(String(event.id))).toMatchObject({ type: "checkout.session.completed", project_id: "hooked", outcome: "fulfilled: 7000000 micro-USD" });

    const processed = await b.processCheckout({ parent: "accounts/hooked", sessionId });
    expect(processed).toMatchObject({ grantedCreditsMicros: 7_000_000n, alreadyProcessed: true, balanceMicros: 7_000_000n });
    // Stripe may also send a new event for the same session (another id): still granted once.
    expect((await deliverEvent(ts.url, fake.event("checkout.session.completed", session))).body).toMatchObject({ duplicate: false, outcome: "already fulfilled" });
    expect((await entries("hooked", "purchase")).map((e) => [e.amount_micros, e.actor])).toEqual([[7_000_000, ""]]);
    expect(await balance("hooked")).toBe(7_000_000);
  });

  it("a forged or another account's session id grants nothing", async () => {
    const mine = await account("honest");
    const theirs = await account("victim");
    await buyCredits(mine, "honest", 1_000_000n);
    const foreign = await buyCredits(theirs, "victim", 50_000_000n);
    fake.completeSession(foreign.sessionId);

    await expectCode(mine.processCheckout({ parent: "accounts/honest", sessionId: "cs_test_forged123" }), Code.NotFound, /checkout session "cs_test_forged123" not found/);
    await expectCode(mine.processCheckout({ parent: "accounts/honest", sessionId: foreign.sessionId }), Code.NotFound, new RegExp(`checkout session "${foreign.sessionId}" not found`));
    await expectCode(mine.processCheckout({ parent: "accounts/victim", sessionId: foreign.sessionId }), Code.NotFound, /account "accounts\/victim" not found/);

    // A signed event naming this account on someone else's session: ignored.
    const victimSession = fake.sessions.get(foreign.sessionId)!;
    const spoofed = fake.event("checkout.session.completed", { ...victimSession, client_reference_id: "honest", metadata: { ...(victimSession.metadata as object), formstate_project: "honest" } });
    expect(await deliverEvent(ts.url, spoofed)).toEqual({ status: 200, body: { received: true, duplicate: false, outcome: `ignored: checkout session "${foreign.sessionId}" not found` } });
    // A signed event for a session Stripe does not know: ignored.
    const unknown = fake.event("checkout.session.completed", { ...victimSession, id: "cs_test_nosuchsession", client_reference_id: "honest", metadata: { formstate_project: "honest" } });
    expect((await deliverEvent(ts.url, unknown)).body.outcome).toBe('ignored: checkout session "cs_test_nosuchsession" not found');

    expect(await balance("honest")).toBe(0);
    expect(await entries("honest", "purchase")).toEqual([]);
    // The victim's own session is still theirs to fulfil.
    expect(await theirs.processCheckout({ parent: "accounts/victim", sessionId: foreign.sessionId })).toMatchObject({ grantedCreditsMicros: 50_000_000n, alreadyProcessed: false });
  });

  it("validates amounts and return URLs before reaching Stripe", async () => {
    const b = await account("strict");
    const before = fake.requests.length;
    await expectCode(buyCredits(b, "strict", 1_234_567n), Code.InvalidArgument, /credit_amount_micros: must be a whole number of cents/);
    await expectCode(
      b.createCheckoutSession({ parent: "accounts/strict", item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "https://evil.example/ok", cancelUrl: CANCEL_URL }),
      Code.InvalidArgument,
      /success_url: must be on one of the deployment's allowed origins/,
    );
    await expectCode(
      b.createCheckoutSession({ parent: "accounts/strict", item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: OK_URL, cancelUrl: "https://evil.example/no" }),
      Code.InvalidArgument,
      /cancel_url/,
    );
    await expectCode(b.createPortalSession({ parent: "accounts/strict", returnUrl: "https://evil.example/" }), Code.InvalidArgument, /return_url/);
    expect(fake.requests.length).toBe(before);
    // A success URL with a query and a fragment keeps both around the session id.
    const { sessionId } = await b.createCheckoutSession({ parent: "accounts/strict", item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/done?tab=credits#top", cancelUrl: CANCEL_URL });
    expect(fake.sessions.get(sessionId)!.success_url).toBe("http://localhost:3000/done?tab=credits&session_id={CHECKOUT_SESSION_ID}#top");
  });
});

describe("Checkout for a plan", () => {
  it("Pro: tier, limits and status move at once; included credits topped up once; GetSubscription shows Stripe's period", async () => {
    const b = await account("upgrader");
    // This month's Free credits were already granted (as metering does on first use).
    const month = monthKey(Date.now());
    await ts.app.database.transaction((tx) => ledger.book(tx, { projectId: "upgrader", kind: "plan_credits", amountMicros: 5_000_000, idempotencyKey: `plan-credits:${month}` }, Date.now()));
    expect((await ts.app.accounts.planOf("upgrader")).id).toBe("free"); // now cached

    const { sessionId } = await buyPlan(b, "upgrader", PlanTier.PRO);
    expect(fake.sessions.get(sessionId)).toMatchObject({ mode: "subscription", metadata: { formstate_project: "upgrader", formstate_kind: "plan", formstate_plan: "pro" } });
    const { subscription } = fake.completeSession(sessionId);
    expect(subscription).toMatchObject({ metadata: { formstate_project: "upgrader", formstate_plan: "pro" } });
    expect((subscription!.items as { data: Array<{ price: { id: string } }> }).data[0].price.id).toBe(PRICE_PRO);

    const done = await b.processCheckout({ parent: "accounts/upgrader", sessionId });
    expect(done).toMatchObject({ tier: PlanTier.PRO, grantedCreditsMicros: 45_000_000n, alreadyProcessed: false, balanceMicros: 50_000_000n });
    expect((await ts.app.accounts.planOf("upgrader")).id).toBe("pro");
    expect(await accountState("upgrader")).toEqual({ tier: PlanTier.PRO, status: SubscriptionStatus.ACTIVE, agentSlots: 5n, unlimitedSlots: false });
    const credits = await entries("upgrader", "plan_credits");
    expect(credits.map((e) => [e.amount_micros, e.idempotency_key])).toEqual([
      [45_000_000, `checkout:${sessionId}`],
      [5_000_000, `plan-credits:${month}`],
    ]);
    // The webhook for the same session: nothing more.
    expect((await deliverEvent(ts.url, fake.event("checkout.session.completed", fake.sessions.get(sessionId)!))).body.outcome).toBe("already fulfilled");
    expect(await balance("upgrader")).toBe(50_000_000);

    const item = (subscription!.items as { data: Array<{ current_period_start: number; current_period_end: number }> }).data[0];
    const { subscription: sub } = await b.getSubscription({ name: "accounts/upgrader/subscription" });
    expect(sub).toMatchObject({ tier: PlanTier.PRO, status: SubscriptionStatus.ACTIVE, cancelAtPeriodEnd: false, stripeCustomerId: await customerOf("upgrader"), stripeSubscriptionId: subscription!.id });
    expect([timestampMs(sub!.currentPeriodStartTime!), timestampMs(sub!.currentPeriodEndTime!)]).toEqual([item.current_period_start * 1000, item.current_period_end * 1000]);
    const asDeveloper = await (await billingAs("upgrader", "developer")).getSubscription({ name: "accounts/upgrader/subscription" });
    expect(asDeveloper.subscription).toMatchObject({ tier: PlanTier.PRO, stripeCustomerId: "", stripeSubscriptionId: "" });

    // Another Checkout while subscribed: refused before Stripe.
    await expectCode(buyPlan(b, "upgrader", PlanTier.PRO), Code.FailedPrecondition, /already on the Pro plan/);
    await expectCode(buyPlan(b, "upgrader", PlanTier.ENTERPRISE), Code.FailedPrecondition, /active subscription: change plans in the customer portal/);
  });

  it("a plan bought before any credits this month grants the month's credits under the month's key, so metering does not grant them again", async () => {
    const b = await account("freshpro");
    const { sessionId } = await buyPlan(b, "freshpro", PlanTier.ENTERPRISE);
    fake.completeSession(sessionId);
    expect(await b.processCheckout({ parent: "accounts/freshpro", sessionId })).toMatchObject({ tier: PlanTier.ENTERPRISE, grantedCreditsMicros: 1_000_000_000n });
    expect((await entries("freshpro", "plan_credits")).map((e) => e.idempotency_key)).toEqual([`plan-credits:${monthKey(Date.now())}`]);
    expect(await accountState("freshpro")).toMatchObject({ tier: PlanTier.ENTERPRISE, unlimitedSlots: true });
  });

  it("ListPlans names the Stripe price of each plan sold", async () => {
    const { plans } = await createClient(BillingService, ts.grpc()).listPlans({});
    expect(plans.map((p) => [p.id, p.stripePriceId])).toEqual([
      ["free", ""],
      ["pro", PRICE_PRO],
      ["enterprise", PRICE_ENTERPRISE],
    ]);
  });
});

describe("subscription webhooks", () => {
  /** An account with a Stripe customer (made by starting a Checkout) and a subscription only in Stripe. */
  async function subscribed(projectId: string, status = "active") {
    const b = await account(projectId);
    await buyCredits(b, projectId, 1_000_000n);
    const customer = await customerOf(projectId);
    return { b, customer, sub: fake.createSubscription(customer, PRICE_PRO, { formstate_project: projectId, formstate_plan: "pro" }, status) };
  }

  it("updated before created ends in Stripe's current state; past_due keeps the plan; invoices and cancellation move it", async () => {
    const { b, customer, sub } = await subscribed("lifecycle", "incomplete");
    const subId = String(sub.id);
    const created = fake.event("customer.subscription.created", sub); // says incomplete
    const updated = fake.event("customer.subscription.updated", fake.updateSubscription(subId, { status: "active" }));
    expect((await deliverEvent(ts.url, updated)).body).toMatchObject({ duplicate: false, outcome: "applied: active, plan pro" });
    expect((await deliverEvent(ts.url, created)).body).toMatchObject({ duplicate: false, outcome: "applied: active, plan pro" });
    expect(await accountState("lifecycle")).toMatchObject({ tier: PlanTier.PRO, status: SubscriptionStatus.ACTIVE });

    const invoice = (id: string) => ({ id, object: "invoice", customer, parent: { type: "subscription_details", subscription_details: { subscription: subId } } });
    fake.updateSubscription(subId, { status: "past_due" });
    expect((await deliverEvent(ts.url, fake.event("invoice.payment_failed", invoice("in_1")))).body.outcome).toBe("applied: past_due, plan pro");
    expect(await accountState("lifecycle")).toMatchObject({ tier: PlanTier.PRO, status: SubscriptionStatus.PAST_DUE });
    fake.updateSubscription(subId, { status: "active" });
    expect((await deliverEvent(ts.url, fake.event("invoice.paid", invoice("in_2")))).body.outcome).toBe("applied: active, plan pro");
    expect(await accountState("lifecycle")).toMatchObject({ status: SubscriptionStatus.ACTIVE });

    // The portal: upgrade to Enterprise, then cancel at period end.
    await deliverEvent(ts.url, fake.event("customer.subscription.updated", fake.updateSubscription(subId, { price: PRICE_ENTERPRISE, cancelAtPeriodEnd: true })));
    expect(await accountState("lifecycle")).toMatchObject({ tier: PlanTier.ENTERPRISE, status: SubscriptionStatus.ACTIVE });
    expect((await b.getSubscription({ name: "accounts/lifecycle/subscription" })).subscription).toMatchObject({ tier: PlanTier.ENTERPRISE, cancelAtPeriodEnd: true });

    // Deleted, then a stale "updated" (still saying active) arrives late: Stripe says canceled, so Free stays.
    const stale = fake.event("customer.subscription.updated", fake.subscriptions.get(subId)!);
    expect((await ts.app.accounts.planOf("lifecycle")).id).toBe("enterprise");
    const deleted = fake.event("customer.subscription.deleted", fake.updateSubscription(subId, { status: "canceled" }));
    expect((await deliverEvent(ts.url, deleted)).body.outcome).toBe("applied: canceled, plan free");
    expect((await ts.app.accounts.planOf("lifecycle")).id).toBe("free");
    expect((await deliverEvent(ts.url, stale)).body.outcome).toBe("applied: canceled, plan free");
    expect(await accountState("lifecycle")).toEqual({ tier: PlanTier.FREE, status: SubscriptionStatus.CANCELED, agentSlots: 1n, unlimitedSlots: false });
    expect((await b.getSubscription({ name: "accounts/lifecycle/subscription" })).subscription).toMatchObject({ tier: PlanTier.FREE, cancelAtPeriodEnd: false, stripeSubscriptionId: subId });
  });

  it("a late event about an old, ended subscription does not undo a new live one", async () => {
    const { customer, sub: old } = await subscribed("resub");
    await deliverEvent(ts.url, fake.event("customer.subscription.created", old));
    const lateDeleted = fake.event("customer.subscription.deleted", fake.updateSubscription(String(old.id), { status: "canceled" }));
    const fresh = fake.createSubscription(customer, PRICE_ENTERPRISE);
    expect((await deliverEvent(ts.url, fake.event("customer.subscription.created", fresh))).body.outcome).toBe("applied: active, plan enterprise");
    expect((await deliverEvent(ts.url, lateDeleted)).body.outcome).toBe(`ignored: subscription ${String(old.id)} (canceled) does not replace the current one`);
    expect(await accountState("resub")).toMatchObject({ tier: PlanTier.ENTERPRISE, status: SubscriptionStatus.ACTIVE });
  });

  it("the same event twice at once applies once; events for unknown customers and unhandled types are recorded, not applied", async () => {
    const { sub } = await subscribed("twice");
    const event = fake.event("customer.subscription.created", sub);
    const both = await Promise.all([deliverEvent(ts.url, event), deliverEvent(ts.url, event)]);
    expect(both.map((r) => [r.status, r.body.duplicate]).sort()).toEqual([
      [200, false],
      [200, true],
    ]);
    expect(await db().selectFrom("stripe_event").select("outcome").where("event_id", "=", String(event.id)).execute()).toEqual([{ outcome: "applied: active, plan pro" }]);

    const stranger = fake.event("customer.subscription.updated", { ...sub, customer: "cus_somebodyelse" });
    expect((await deliverEvent(ts.url, stranger)).body.outcome).toBe("ignored: unknown customer");
    const other = fake.event("payment_intent.created", { id: "pi_1", object: "payment_intent" });
    expect((await deliverEvent(ts.url, other)).body.outcome).toBe("ignored: payment_intent.created is not handled");
    expect(await storedEvent(String(other.id))).toMatchObject({ type: "payment_intent.created", project_id: null });
    // A refund of a charge Stripe does not know for this account: recorded, changes nothing.
    const unknown = fake.event("charge.refunded", { id: "ch_1", object: "charge" });
    expect((await deliverEvent(ts.url, unknown)).body.outcome).toBe("ignored: unknown charge");
  });

  it("Stripe unreachable while applying: 500, nothing recorded; the redelivery applies", async () => {
    const { sub } = await subscribed("outage");
    const event = fake.event("customer.subscription.created", sub);
    fake.apiDown = true;
    try {
      expect(await deliverEvent(ts.url, event)).toEqual({ status: 500, body: { error: "the event could not be processed now; deliver it again" } });
    } finally {
      fake.apiDown = false;
    }
    expect(await storedEvent(String(event.id))).toBeUndefined();
    expect(await accountState("outage")).toMatchObject({ tier: PlanTier.FREE });
    expect((await deliverEvent(ts.url, event)).body).toMatchObject({ duplicate: false, outcome: "applied: active, plan pro" });
    expect(await accountState("outage")).toMatchObject({ tier: PlanTier.PRO });
  });
});

describe("webhook signatures", () => {
  it("wrong secret, stale timestamp, tampered body, missing or malformed header: 400 and nothing changes", async () => {
    const b = await account("sigs");
    const { sessionId } = await buyCredits(b, "sigs", 3_000_000n);
    const { session } = fake.completeSession(sessionId);
    const event = fake.event("checkout.session.completed", session);
    const payload = JSON.stringify(event);
    const refused = { status: 400, body: { error: "invalid Stripe signature" } };

    expect(await deliver(ts.url, payload, signatureFor(payload, { secret: "whsec_wrong" }))).toEqual(refused);
    expect(await deliver(ts.url, payload, signatureFor(payload, { timestamp: Math.floor(Date.now() / 1000) - 301 }))).toEqual(refused);
    const tampered = payload.replace('"formstate_credit_micros":"3000000"', '"formstate_credit_micros":"9000000"');
    expect(tampered).not.toBe(payload);
    expect(await deliver(ts.url, tampered, signatureFor(payload))).toEqual(refused);
    expect(await deliver(ts.url, payload, "t=1,v1=deadbeef")).toEqual(refused);
    expect(await deliver(ts.url, payload)).toEqual({ status: 400, body: { error: "missing Stripe-Signature header" } });

    expect(await storedEvent(String(event.id))).toBeUndefined();
    expect(await balance("sigs")).toBe(0);
    expect(await db().selectFrom("checkout_fulfillment").select("session_id").where("session_id", "=", sessionId).execute()).toEqual([]);

    // The same payload, properly signed (within the 300 s tolerance), applies.
    expect((await deliver(ts.url, payload, signatureFor(payload, { timestamp: Math.floor(Date.now() / 1000) - 200 }))).status).toBe(200);
    expect(await balance("sigs")).toBe(3_000_000);
  });

  it("the route takes only POST, at most 1 MiB, and never answers CORS", async () => {
    expect((await fetch(`${ts.url}/webhooks/stripe`)).status).toBe(405);
    const big = "x".repeat(1024 * 1024 + 1);
    expect(await deliver(ts.url, big, signatureFor(big))).toEqual({ status: 413, body: { error: "the body is larger than 1048576 bytes" } });
    const preflight = await fetch(`${ts.url}/webhooks/stripe`, {
      method: "OPTIONS",
      headers: { origin: "http://localhost:3000", "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(405);
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    const event = fake.event("payment_intent.created", { id: "pi_2", object: "payment_intent" });
    const payload = JSON.stringify(event);
    const withOrigin = await fetch(`${ts.url}/webhooks/stripe`, { method: "POST", headers: { origin: "http://localhost:3000", "stripe-signature": signatureFor(payload) }, body: payload });
    expect(withOrigin.status).toBe(200);
    expect(withOrigin.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("roles, projects and the portal", () => {
  it("only admins create checkout or portal sessions, process checkouts or grant credits; other projects see nothing", async () => {
    const admin = await account("roles");
    const { sessionId } = await buyCredits(admin, "roles", 2_000_000n);
    fake.completeSession(sessionId);
    for (const role of ["developer", "user"] as const) {
      const b = await billingAs("roles", role);
      await expectCode(buyCredits(b, "roles", 1_000_000n), Code.PermissionDenied);
      await expectCode(b.processCheckout({ parent: "accounts/roles", sessionId }), Code.PermissionDenied);
      await expectCode(b.createPortalSession({ parent: "accounts/roles", returnUrl: CANCEL_URL }), Code.PermissionDenied);
      await expectCode(b.addCredits({ parent: "accounts/roles", amountMicros: 1n, reason: "x", requestId: `r-${role}` }), Code.PermissionDenied);
    }
    const outsider = await billingAs("outsider", "admin");
    await expectCode(buyCredits(outsider, "roles", 1_000_000n), Code.NotFound);
    await expectCode(outsider.processCheckout({ parent: "accounts/roles", sessionId }), Code.NotFound);
    await expectCode(outsider.createPortalSession({ parent: "accounts/roles", returnUrl: CANCEL_URL }), Code.NotFound);
    await expectCode(outsider.getSubscription({ name: "accounts/roles/subscription" }), Code.NotFound);
    await expectCode(outsider.listCreditTransactions({ parent: "accounts/roles" }), Code.NotFound);
    expect(await balance("roles")).toBe(0);

    const portal = await admin.createPortalSession({ parent: "accounts/roles", returnUrl: CANCEL_URL });
    expect(portal.url).toMatch(new RegExp(`^${fake.url}/portal/bps_[0-9a-f]{18}$`));
    expect((await admin.processCheckout({ parent: "accounts/roles", sessionId })).grantedCreditsMicros).toBe(2_000_000n);
  });

  it("the portal needs a Stripe customer first", async () => {
    const b = await account("noportal");
    await expectCode(b.createPortalSession({ parent: "accounts/noportal", returnUrl: CANCEL_URL }), Code.FailedPrecondition, /no Stripe customer yet/);
    expect((await b.getSubscription({ name: "accounts/noportal/subscription" })).subscription).toMatchObject({ status: SubscriptionStatus.NONE, stripeCustomerId: "" });
  });
});
