import type { Kysely } from "kysely";

/**
 * Payment rails and statements (issue 18, items 3 to 5):
 * - `x402_payment`: x402 top-ups, one row per payment payload (its hash is
 *   unique, so a replayed payload is refused) and per settlement
 *   transaction (unique per network, so one settlement credits once).
 * - `alert_rule`, `alert_firing`, `webhook_delivery`: spend alerts, the
 *   period each fired in (once per rule and period), and the outbox of
 *   signed webhooks with its delivery log.
 * - `ledger_entry_hash`: the hash chain over each account's ledger (live and sandbox apart) that
 *   signed receipts carry. Times are epoch ms; money is micro-USD.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("x402_payment")
    .addColumn("payment_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("payload_hash", "text", (c) => c.notNull().unique())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("amount_micros", "bigint", (c) => c.notNull())
    .addColumn("network", "text", (c) => c.notNull())
    .addColumn("payer", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("transaction_hash", "text")
    .addColumn("credit_tx_id", "text")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("x402_payment_settlement").on("x402_payment").columns(["network", "transaction_hash"]).unique().execute();

  await db.schema
    .createTable("alert_rule")
    .addColumn("rule_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("api_key_id", "text")
    .addColumn("threshold_micros", "bigint", (c) => c.notNull())
    .addColumn("threshold_percent", "integer", (c) => c.notNull())
    .addColumn("endpoint_url", "text", (c) => c.notNull())
    .addColumn("signing_secret", "text", (c) => c.notNull())
    .addColumn("description", "text", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("alert_rule_project").on("alert_rule").columns(["project_id", "create_time"]).execute();

  await db.schema
    .createTable("alert_firing")
    .addColumn("rule_id", "text", (c) => c.notNull())
    .addColumn("period", "text", (c) => c.notNull())
    .addColumn("event_id", "text", (c) => c.notNull())
    .addColumn("fire_time", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("alert_firing_pk", ["rule_id", "period"])
    .execute();

  await db.schema
    .createTable("webhook_delivery")
    .addColumn("delivery_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("rule_id", "text", (c) => c.notNull())
    .addColumn("event_type", "text", (c) => c.notNull())
    .addColumn("endpoint_url", "text", (c) => c.notNull())
    .addColumn("payload", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_time", "bigint", (c) => c.notNull())
    .addColumn("lease_owner", "text")
    .addColumn("last_status", "integer")
    .addColumn("last_error", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("deliver_time", "bigint")
    .execute();
  await db.schema.createIndex("webhook_delivery_due").on("webhook_delivery").columns(["state", "next_attempt_time"]).execute();
  await db.schema.createIndex("webhook_delivery_project").on("webhook_delivery").columns(["project_id", "create_time"]).execute();

  await db.schema
    .createTable("ledger_entry_hash")
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("environment", "text", (c) => c.notNull())
    .addColumn("seq", "bigint", (c) => c.notNull())
    .addColumn("entry_hash", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("ledger_entry_hash_pk", ["project_id", "environment", "seq"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ["ledger_entry_hash", "webhook_delivery", "alert_firing", "alert_rule", "x402_payment"]) await db.schema.dropTable(t).execute();
}
