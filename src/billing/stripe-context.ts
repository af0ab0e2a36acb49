/**
 * What every Stripe-backed part of billing shares: the SDK, the settings, the
 * store, the clock, and one lock per account so that reading a state from
 * Stripe and storing it never interleave in this process.
 */
import type { Clock } from "../clock.js";
import type { StripeConfig } from "../config.js";
import type { Database, Db } from "../db/database.js";
import type { LedgerRow } from "../ledger/ledger.js";
import type { Micros } from "../ledger/micros.js";
import { notFound } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Plans } from "../plans/plans.js";
import * as store from "./billing-store.js";
import { KeyedLock } from "./keyed-lock.js";
import type { Stripe } from "./stripe-client.js";
import { accountName } from "../names/names.js";

export type StripeSettings = StripeConfig & { secretKey: string; webhookSecret: string };

export interface StripeContext {
  stripe: Stripe;
  settings: StripeSettings;
  database: Database;
  clock: Clock;
  log: Logger;
  plans: Plans;
  invalidatePlan(projectId: string): void;
  locks: KeyedLock;
  /** Called in the transaction of each credit clawback (refund or dispute) that takes credits back. */
  onConsumerClawback?(tx: Db, clawback: { projectId: string; taken: number; balanceAfter: number; key: string }): Promise<unknown>;
  /** Told of credits a checkout booked, once it has committed (the event stream publishes them). */
  onCreditsAdded?(row: LedgerRow, balanceMicros: Micros): void;
}

/**
 * The account's Stripe customer, created on first need and stored. Concurrent
 * callers in this process share one creation; Stripe's idempotency key makes
 * another process's concurrent creation return the same customer.
 */
export function ensureCustomer(ctx: StripeContext, projectId: string): Promise<string> {
  return ctx.locks.run(`customer:${projectId}`, async () => {
    const existing = await store.findCustomer(ctx.database.db, projectId);
    if (existing) return existing.stripe_customer_id;
    const account = await store.accountContact(ctx.database.db, projectId);
    if (!account) throw notFound(`account "${accountName(projectId)}"`);
    const customer = await ctx.stripe.customers.create(
      { name: account.display_name || projectId, email: account.billing_email || undefined, metadata: { formstate_project: projectId } },
      { idempotencyKey: `formstate-customer-${projectId}` },
    );
    return ctx.database.transaction((tx) => store.saveCustomer(tx, projectId, customer.id, ctx.clock.now()));
  });
}
