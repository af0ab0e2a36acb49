import type { Kysely } from "kysely";

/**
 * The marketplace pays its publishers (issue 18):
 * - models and agents carry the publisher's share in basis points (null on
 *   rows from before: the platform default applies to them);
 * - `publisher_earning`: the append-only earnings ledger of publishers, one
 *   entry per split of a consumer's debit, clawback, payout or payout
 *   reversal, unique by idempotency key;
 * - `payout_account`: a project's Stripe Connect account;
 * - `payout`: the payout outbox, one row per publisher and schedule period.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  for (const table of ["model", "agent"]) await db.schema.alterTable(table).addColumn("publisher_share_bps", "integer").execute();
  await db.schema
    .createTable("publisher_earning")
    .addColumn("entry_id", "text", (c) => c.primaryKey())
    .addColumn("publisher_project", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("resource", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("consumer_project", "text")
    .addColumn("usage_record_id", "text")
    .addColumn("payout_id", "text")
    .addColumn("earning_entry_id", "text")
    .addColumn("share_bps", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("gross_micros", "bigint", (c) => c.notNull())
    .addColumn("amount_micros", "bigint", (c) => c.notNull())
    .addColumn("platform_fee_micros", "bigint", (c) => c.notNull())
    .addColumn("idempotency_key", "text", (c) => c.notNull().unique())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("publisher_earning_publisher").on("publisher_earning").columns(["publisher_project", "create_time"]).execute();
  await db.schema.createIndex("publisher_earning_consumer").on("publisher_earning").columns(["consumer_project", "create_time"]).execute();
  await db.schema.createIndex("publisher_earning_usage").on("publisher_earning").column("usage_record_id").execute();
  await db.schema.createIndex("publisher_earning_taken").on("publisher_earning").column("earning_entry_id").execute();
  await db.schema
    .createTable("payout_account")
    .addColumn("project_id", "text", (c) => c.primaryKey())
    .addColumn("stripe_account_id", "text", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("payout")
    .addColumn("payout_id", "text", (c) => c.primaryKey())
    .addColumn("publisher_project", "text", (c) => c.notNull())
    .addColumn("period_key", "text", (c) => c.notNull())
    .addColumn("stripe_account_id", "text", (c) => c.notNull())
    .addColumn("amount_micros", "bigint", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_time", "bigint", (c) => c.notNull())
    .addColumn("lease_owner", "text")
    .addColumn("lease_until", "bigint")
    .addColumn("last_error", "text")
    .addColumn("stripe_transfer_id", "text")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("paid_time", "bigint")
    .execute();
  await db.schema.createIndex("payout_period").on("payout").columns(["publisher_project", "period_key"]).unique().execute();
  await db.schema.createIndex("payout_due").on("payout").columns(["status", "next_attempt_time"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ["payout", "payout_account", "publisher_earning"]) await db.schema.dropTable(t).execute();
  for (const table of ["model", "agent"]) await db.schema.alterTable(table).dropColumn("publisher_share_bps").execute();
}
