/**
 * A Stripe subscription's state, as read from Stripe, decides the account's
 * plan: which plan its price sells, whether that plan is in force for its
 * status, and whether it is the subscription that counts (a late event about
 * an old, ended subscription never undoes a newer live one).
 */
import type { Db } from "../db/database.js";
import * as store from "./billing-store.js";
import { type Stripe, idOf } from "./stripe-client.js";

/** What Formstate keeps of a subscription. Times are epoch ms. */
export interface SubscriptionSnapshot {
  id: string;
  customerId: string;
  status: Stripe.Subscription.Status;
  priceId: string | null;
  /** The plan id Checkout put in the subscription's metadata (used when the price is not a configured one). */
  planHint: string | null;
  periodStart: number | null;
  periodEnd: number | null;
  cancelAtPeriodEnd: boolean;
}

export type PaidPlanId = "pro" | "enterprise";
export type PriceIds = { pro?: string; enterprise?: string };

const ms = (sec: number | null | undefined) => (typeof sec === "number" ? sec * 1000 : null);

export function snapshotOf(sub: Stripe.Subscription): SubscriptionSnapshot {
  const item = sub.items?.data?.[0];
  // Since API version 2025-03-31 the period is on the items; older versions put it on the subscription.
  const legacy = sub as unknown as { current_period_start?: number; current_period_end?: number };
  return {
    id: sub.id,
    customerId: idOf(sub.customer)!,
    status: sub.status,
    priceId: item?.price?.id ?? null,
    planHint: sub.metadata?.formstate_plan ?? null,
    periodStart: ms(item?.current_period_start ?? legacy.current_period_start),
    periodEnd: ms(item?.current_period_end ?? legacy.current_period_end),
    cancelAtPeriodEnd: sub.cancel_at_period_end,
  };
}

/** Statuses in which the paid plan is in force (past_due: Stripe is still retrying the payment). */
export function isLive(status: string | null): boolean {
  return status === "active" || status === "trialing" || status === "past_due";
}

/** The paid plan a price sells: the configured prices first, then Checkout's metadata. */
export function planOfPrice(prices: PriceIds, priceId: string | null, planHint: string | null): PaidPlanId | undefined {
  if (priceId && priceId === prices.pro) return "pro";
  if (priceId && priceId === prices.enterprise) return "enterprise";
  return planHint === "pro" || planHint === "enterprise" ? planHint : undefined;
}

/** The price Checkout sells a plan at, if it is sold. */
export function priceOf(prices: PriceIds, planId: string): string | undefined {
  return planId === "pro" || planId === "enterprise" ? prices[planId] : undefined;
}

/** The account's plan tier and stored status for a subscription in this state. */
export function accountStateOf(status: Stripe.Subscription.Status, plan: PaidPlanId | undefined): { planTier: string; subscriptionStatus: string } {
  const subscriptionStatus =
    status === "incomplete" ? "none" : status === "incomplete_expired" ? "canceled" : status === "paused" ? "unpaid" : status;
  return { planTier: isLive(status) && plan ? plan : "free", subscriptionStatus };
}

/**
 * Whether `incoming` decides the account: it is the stored subscription, or
 * there is none, or the stored one has ended, or `incoming` is live (a new
 * subscription replaces an old one, never the other way round).
 */
export function decides(stored: { subscriptionId: string | null; status: string | null }, incoming: SubscriptionSnapshot): boolean {
  if (!stored.subscriptionId || stored.subscriptionId === incoming.id) return true;
  return !isLive(stored.status) || isLive(incoming.status);
}

/**
 * Stores the subscription and moves the account's plan, in the caller's
 * transaction. Returns the plan tier in force after, and whether it applied.
 */
export async function applySubscription(tx: Db, projectId: string, sub: SubscriptionSnapshot, prices: PriceIds, now: number): Promise<{ applied: boolean; planTier: string }> {
  const stored = await store.findCustomer(tx, projectId);
  if (!stored || !decides({ subscriptionId: stored.stripe_subscription_id, status: stored.stripe_status }, sub)) {
    return { applied: false, planTier: (await store.accountPlanTier(tx, projectId)) ?? "free" };
  }
  const { planTier, subscriptionStatus } = accountStateOf(sub.status, planOfPrice(prices, sub.priceId, sub.planHint));
  await store.saveSubscription(tx, projectId, sub, now);
  await store.setAccountPlan(tx, projectId, planTier, subscriptionStatus, now);
  return { applied: true, planTier };
}
