import type { Kysely } from "kysely";

/**
 * Billing with Stripe: the Stripe customer and subscription of each account,
 * Stripe events already processed, Checkout sessions already fulfilled, and
 * the outbox of metered usage to report to Stripe. Times are epoch ms.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("billing_customer")
    .addColumn("project_id", "text", (c) => c.primaryKey().references("account.project_id").onDelete("cascade"))
    .addColumn("stripe_customer_id", "text", (c) => c.notNull().unique())
    .addColumn("stripe_subscription_id", "text")
    .addColumn("stripe_status", "text")
    .addColumn("stripe_price_id", "text")
    .addColumn("current_period_start", "bigint")
    .addColumn("current_period_end", "bigint")
    .addColumn("cancel_at_period_end", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("stripe_event")
    .addColumn("event_id", "text", (c) => c.primaryKey())
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("project_id", "text")
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("process_time", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("checkout_fulfillment")
    .addColumn("session_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("plan_id", "text")
    .addColumn("granted_micros", "bigint", (c) => c.notNull())
    .addColumn("fulfilled_by", "text", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("meter_outbox")
    .addColumn("identifier", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("stripe_customer_id", "text", (c) => c.notNull())
    .addColumn("value_micros", "bigint", (c) => c.notNull())
    .addColumn("event_time", "bigint", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_time", "bigint", (c) => c.notNull())
    .addColumn("lease_owner", "text")
    .addColumn("lease_until", "bigint")
    .addColumn("last_error", "text")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("sent_time", "bigint")
    .execute();
  await db.schema.createIndex("meter_outbox_due").on("meter_outbox").columns(["status", "next_attempt_time", "create_time"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ["meter_outbox", "checkout_fulfillment", "stripe_event", "billing_customer"]) await db.schema.dropTable(t).execute();
}
