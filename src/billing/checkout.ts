/**
 * Stripe Checkout: a session for a paid plan or a credit pack, and its
 * fulfilment, once per session whoever reports it first (ProcessCheckout
 * from the success page, or the webhook). A session is believed only as
 * Stripe tells it: retrieved from Stripe, complete and paid, made for this
 * account (its client reference, customer and metadata all agree).
 */
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import type { Db } from "../db/database.js";
import { failedPrecondition, invalidArgument, notFound } from "../errors.js";
import * as ledger from "../ledger/ledger.js";
import type { LedgerRow } from "../ledger/ledger.js";
import type { Plan } from "../plans/plans.js";
import { monthKey, monthOf } from "../usage/period.js";
import * as store from "./billing-store.js";
import { type StripeContext, ensureCustomer } from "./stripe-context.js";
import { type Stripe, idOf, isMissing } from "./stripe-client.js";
import { type SubscriptionSnapshot, applySubscription, isLive, priceOf, snapshotOf } from "./subscriptions.js";

export type CheckoutItem = { kind: "plan"; tier: PlanTier } | { kind: "credits"; micros: number };

/** Who reports a finished session: the browser through ProcessCheckout, or a Stripe event. */
export type Reporter = { via: "process_checkout"; actor: string } | { via: "webhook"; event: { id: string; type: string } };

export interface Fulfilment {
  grantedMicros: number;
  planTier: string;
  /** The session had been fulfilled before: nothing was granted now. */
  alreadyProcessed: boolean;
  /** The webhook event had been applied before (webhook only). */
  duplicateEvent: boolean;
  balance: number | bigint;
}

const MICROS_PER_CENT = 10_000;

/** The success URL with Stripe's session id placeholder added (before any fragment). */
export function withSessionId(url: string): string {
  const hash = url.indexOf("#");
  const [base, fragment] = hash < 0 ? [url, ""] : [url.slice(0, hash), url.slice(hash)];
  return `${base}${base.includes("?") ? "&" : "?"}session_id={CHECKOUT_SESSION_ID}${fragment}`;
}

export class Checkout {
  constructor(private readonly ctx: StripeContext) {}

  /** A Checkout session for the account; the caller sends the user to its url. */
  async create(projectId: string, item: CheckoutItem, successUrl: string, cancelUrl: string): Promise<{ sessionId: string; url: string; expireTime: number }> {
    const meta = { formstate_project: projectId };
    let params: Stripe.Checkout.SessionCreateParams;
    if (item.kind === "plan") {
      const { plan, price } = await this.planForSale(projectId, item.tier);
      params = {
        mode: "subscription",
        line_items: [{ price, quantity: 1 }],
        subscription_data: { metadata: { ...meta, formstate_plan: plan.id } },
        metadata: { ...meta, formstate_kind: "plan", formstate_plan: plan.id },
      };
    } else {
      if (item.micros % MICROS_PER_CENT !== 0) throw invalidArgument("credit_amount_micros", "must be a whole number of cents (a multiple of 10000)");
      params = {
        mode: "payment",
        line_items: [{ quantity: 1, price_data: { currency: "usd", unit_amount: item.micros / MICROS_PER_CENT, product_data: { name: `Formstate credits, ${(item.micros / 1_000_000).toFixed(2)} USD` } } }],
        metadata: { ...meta, formstate_kind: "credits", formstate_credit_micros: String(item.micros) },
      };
    }
    const customer = await ensureCustomer(this.ctx, projectId);
    const session = await this.ctx.stripe.checkout.sessions.create({ ...params, customer, client_reference_id: projectId, success_url: withSessionId(successUrl), cancel_url: cancelUrl });
    return { sessionId: session.id, url: session.url ?? "", expireTime: session.expires_at * 1000 };
  }

  /**
   * Confirms the session with Stripe and fulfils it, once: a second report
   * (either way) grants nothing and says so. NOT_FOUND for a session Stripe
   * does not know or that is not this account's; FAILED_PRECONDITION while unpaid.
   */
  fulfil(projectId: string, sessionId: string, by: Reporter): Promise<Fulfilment> {
    const { ctx } = this;
    return ctx.locks.run(`project:${projectId}`, async () => {
      const event = by.via === "webhook" ? by.event : undefined;
      // A redelivered event needs no call to Stripe (the transaction below decides for certain).
      if (event && (await store.eventSeen(ctx.database.db, event.id))) return this.answer(ctx.database.db, projectId, sessionId, { alreadyProcessed: true, duplicateEvent: true });
      const session = await this.confirmed(projectId, sessionId);
      let sub: SubscriptionSnapshot | undefined;
      if (session.metadata?.formstate_kind === "plan") {
        const subscriptionId = idOf(session.subscription);
        if (!subscriptionId) throw failedPrecondition(`checkout session ${sessionId} has no subscription`, "CHECKOUT_NOT_PAID");
        sub = snapshotOf(await ctx.stripe.subscriptions.retrieve(subscriptionId));
      }
      const now = ctx.clock.now();
      let booked: LedgerRow | undefined;
      const result = await ctx.database.transaction(async (tx) => {
        booked = undefined; // a retried transaction books afresh
        if (event && (await store.eventSeen(tx, event.id))) return this.answer(tx, projectId, sessionId, { alreadyProcessed: true, duplicateEvent: true });
        const fulfilled = await this.fulfilIn(tx, projectId, session, sub, by, now);
        booked = fulfilled?.row;
        if (event) await store.recordEvent(tx, event, projectId, fulfilled === undefined ? "already fulfilled" : `fulfilled: ${fulfilled.granted} micro-USD`, now);
        return this.answer(tx, projectId, sessionId, { alreadyProcessed: fulfilled === undefined, duplicateEvent: false });
      });
      if (sub) ctx.invalidatePlan(projectId);
      if (booked) ctx.onCreditsAdded?.(booked, result.balance);
      return result;
    });
  }

  /** The plan a Checkout may sell to this account now, and its price. */
  private async planForSale(projectId: string, tier: PlanTier): Promise<{ plan: Plan; price: string }> {
    const plan = this.ctx.plans.all.find((p) => p.tier === tier);
    if (!plan || plan.tier === PlanTier.FREE) throw invalidArgument("plan", "must be a paid plan");
    const price = priceOf(this.ctx.settings.prices, plan.id);
    if (!price) {
      throw failedPrecondition(`the ${plan.displayName} plan is not sold through Stripe (STRIPE_PRICE_${plan.id.toUpperCase()} is not set)`, "PLAN_NOT_SOLD");
    }
    const customer = await store.findCustomer(this.ctx.database.db, projectId);
    if (customer && isLive(customer.stripe_status)) {
      if ((await store.accountPlanTier(this.ctx.database.db, projectId)) === plan.id) {
        throw failedPrecondition(`the account is already on the ${plan.displayName} plan`, "ALREADY_ON_PLAN");
      }
      throw failedPrecondition(`the account has a ${customer.stripe_status} subscription: change plans in the customer portal (CreatePortalSession)`, "SUBSCRIPTION_EXISTS");
    }
    return { plan, price };
  }

  private async confirmed(projectId: string, sessionId: string): Promise<Stripe.Checkout.Session> {
    const unknown = () => notFound(`checkout session "${sessionId}"`);
    const customer = await store.findCustomer(this.ctx.database.db, projectId);
    let session: Stripe.Checkout.Session;
    try {
      session = await this.ctx.stripe.checkout.sessions.retrieve(sessionId);
    } catch (err) {
      throw isMissing(err) ? unknown() : err;
    }
    const ours = customer && session.client_reference_id === projectId && idOf(session.customer) === customer.stripe_customer_id && session.metadata?.formstate_project === projectId;
    if (!ours) throw unknown();
    if (session.status !== "complete" || session.payment_status === "unpaid") {
      throw failedPrecondition(`checkout session ${sessionId} is not paid (status ${session.status}, payment ${session.payment_status})`, "CHECKOUT_NOT_PAID");
    }
    return session;
  }

  /** What the session granted, now or before, with the plan and balance after. */
  private async answer(db: Db, projectId: string, sessionId: string, how: { alreadyProcessed: boolean; duplicateEvent: boolean }): Promise<Fulfilment> {
    return {
      ...how,
      grantedMicros: (await store.findFulfillment(db, sessionId))?.granted_micros ?? 0,
      planTier: (await store.accountPlanTier(db, projectId)) ?? "free",
      balance: await ledger.balanceOf(db, projectId),
    };
  }

  /**
   * Books what the session bought, in the transaction that records it as
   * fulfilled; returns the credits granted and their ledger entry (none when
   * a plan brought no credits), or undefined when it was fulfilled before.
   */
  private async fulfilIn(tx: Db, projectId: string, session: Stripe.Checkout.Session, sub: SubscriptionSnapshot | undefined, by: Reporter, now: number): Promise<{ granted: number; row?: LedgerRow } | undefined> {
    if (await store.findFulfillment(tx, session.id)) return undefined;
    const actor = by.via === "process_checkout" ? by.actor : "";
    let grantedMicros: number;
    let row: LedgerRow | undefined;
    let planId: string | null = null;
    if (sub) {
      const { planTier } = await applySubscription(tx, projectId, sub, this.ctx.settings.prices, now);
      planId = planTier;
      ({ amount: grantedMicros, row } = await this.topUpPlanCredits(tx, projectId, this.ctx.plans.byId(planTier), session.id, actor, now));
    } else {
      grantedMicros = Number(session.metadata?.formstate_credit_micros);
      if (!Number.isSafeInteger(grantedMicros) || grantedMicros <= 0) throw failedPrecondition(`checkout session ${session.id} names no credit amount`, "CHECKOUT_NOT_FORMSTATE");
      ({ row } = await ledger.book(tx, { projectId, kind: "purchase", amountMicros: grantedMicros, idempotencyKey: `checkout:${session.id}`, description: `credit pack, Stripe Checkout ${session.id}`, actor }, now));
    }
    await store.insertFulfillment(tx, {
      session_id: session.id,
      project_id: projectId,
      kind: sub ? "plan" : "credits",
      plan_id: planId,
      granted_micros: grantedMicros,
      fulfilled_by: by.via,
      create_time: now,
      payment_intent_id: sub ? null : (idOf(session.payment_intent) ?? null),
    });
    return { granted: grantedMicros, row };
  }

  /**
   * A new plan's included credits for the month now running, less what the
   * month has granted already (so an upgrade tops up, never doubles). Booked
   * as the month's grant when there was none yet, so metering does not grant
   * it again; otherwise under the session's key.
   */
  private async topUpPlanCredits(tx: Db, projectId: string, plan: Plan, sessionId: string, actor: string, now: number): Promise<{ amount: number; row?: LedgerRow }> {
    const month = monthOf(now);
    const granted = await ledger.listEntries(tx, projectId, { kinds: ["plan_credits"], startTime: month.start, endTime: month.end }, 1000);
    const amount = plan.includedCreditsMicros - granted.reduce((sum, e) => sum + Number(e.amount_micros), 0);
    if (amount <= 0) return { amount: 0 };
    const monthly = `plan-credits:${monthKey(now)}`;
    const key = (await ledger.findByIdempotencyKey(tx, projectId, monthly)) ? `checkout:${sessionId}` : monthly;
    const { row } = await ledger.book(tx, { projectId, kind: "plan_credits", amountMicros: amount, idempotencyKey: key, description: `${plan.displayName} included credits ${monthKey(now)}, Stripe Checkout ${sessionId}`, actor }, now);
    return { amount, row };
  }
}
