/**
 * Queries on the billing tables, and the account's plan columns that billing
 * moves. Writes take the caller's transaction.
 */
import type { Selectable } from "kysely";
import type { Db } from "../db/database.js";
import type { BillingCustomerTable, CheckoutFulfillmentTable } from "./billing-tables.js";

export type BillingCustomerRow = Selectable<BillingCustomerTable>;
export type FulfillmentRow = Selectable<CheckoutFulfillmentTable>;

export function findCustomer(db: Db, projectId: string): Promise<BillingCustomerRow | undefined> {
  return db.selectFrom("billing_customer").selectAll().where("project_id", "=", projectId).executeTakeFirst();
}

export async function projectOfCustomer(db: Db, customerId: string): Promise<string | undefined> {
  const row = await db.selectFrom("billing_customer").select("project_id").where("stripe_customer_id", "=", customerId).executeTakeFirst();
  return row?.project_id;
}

/** Stores the account's customer unless one is stored already; returns the stored one. */
export async function saveCustomer(tx: Db, projectId: string, customerId: string, now: number): Promise<string> {
  await tx
    .insertInto("billing_customer")
    .values({ project_id: projectId, stripe_customer_id: customerId, stripe_subscription_id: null, stripe_status: null, stripe_price_id: null, current_period_start: null, current_period_end: null, cancel_at_period_end: 0, create_time: now, update_time: now })
    .onConflict((oc) => oc.column("project_id").doNothing())
    .execute();
  return (await findCustomer(tx, projectId))!.stripe_customer_id;
}

export async function saveSubscription(
  tx: Db,
  projectId: string,
  s: { id: string; status: string; priceId: string | null; periodStart: number | null; periodEnd: number | null; cancelAtPeriodEnd: boolean },
  now: number,
): Promise<void> {
  await tx
    .updateTable("billing_customer")
    .set({
      stripe_subscription_id: s.id,
      stripe_status: s.status,
      stripe_price_id: s.priceId,
      current_period_start: s.periodStart,
      current_period_end: s.periodEnd,
      cancel_at_period_end: s.cancelAtPeriodEnd ? 1 : 0,
      update_time: now,
    })
    .where("project_id", "=", projectId)
    .execute();
}

/** Moves the account's plan tier and subscription status (the caller invalidates the plan cache after commit). */
export async function setAccountPlan(tx: Db, projectId: string, planTier: string, subscriptionStatus: string, now: number): Promise<void> {
  await tx.updateTable("account").set({ plan_tier: planTier, subscription_status: subscriptionStatus, update_time: now }).where("project_id", "=", projectId).execute();
}

export async function accountPlanTier(db: Db, projectId: string): Promise<string | undefined> {
  return (await db.selectFrom("account").select("plan_tier").where("project_id", "=", projectId).executeTakeFirst())?.plan_tier;
}

export async function eventSeen(db: Db, eventId: string): Promise<boolean> {
  return Boolean(await db.selectFrom("stripe_event").select("event_id").where("event_id", "=", eventId).executeTakeFirst());
}

export async function recordEvent(tx: Db, e: { id: string; type: string }, projectId: string | null, outcome: string, now: number): Promise<void> {
  await tx.insertInto("stripe_event").values({ event_id: e.id, type: e.type, project_id: projectId, outcome, process_time: now }).execute();
}

/** The credit purchase paid by a PaymentIntent, if any. */
export function fulfillmentOfPaymentIntent(db: Db, paymentIntentId: string): Promise<FulfillmentRow | undefined> {
  return db.selectFrom("checkout_fulfillment").selectAll().where("payment_intent_id", "=", paymentIntentId).where("kind", "=", "credits").executeTakeFirst();
}

export function findFulfillment(db: Db, sessionId: string): Promise<FulfillmentRow | undefined> {
  return db.selectFrom("checkout_fulfillment").selectAll().where("session_id", "=", sessionId).executeTakeFirst();
}

export async function insertFulfillment(tx: Db, row: FulfillmentRow): Promise<void> {
  await tx.insertInto("checkout_fulfillment").values(row).execute();
}

/** What a new Stripe customer is created with. */
export function accountContact(db: Db, projectId: string): Promise<{ display_name: string; billing_email: string } | undefined> {
  return db.selectFrom("account").select(["display_name", "billing_email"]).where("project_id", "=", projectId).executeTakeFirst();
}
