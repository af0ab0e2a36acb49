import type { Kysely } from "kysely";

/**
 * The credits ledger, usage records with hourly rollups, and holds
 * (authorizations). Money is integer micro-USD; times are epoch milliseconds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("credit_transaction")
    .addColumn("tx_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("seq", "bigint", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("amount_micros", "bigint", (c) => c.notNull())
    .addColumn("balance_after_micros", "bigint", (c) => c.notNull())
    .addColumn("idempotency_key", "text", (c) => c.notNull())
    .addColumn("description", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("usage_record_id", "text")
    .addColumn("authorization_id", "text")
    .addColumn("actor", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("credit_transaction_seq").on("credit_transaction").columns(["project_id", "seq"]).unique().execute();
  await db.schema.createIndex("credit_transaction_idem").on("credit_transaction").columns(["project_id", "idempotency_key"]).unique().execute();
  await db.schema.createIndex("credit_transaction_time").on("credit_transaction").columns(["project_id", "create_time"]).execute();

  await db.schema
    .createTable("usage_record")
    .addColumn("record_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("request_id", "text", (c) => c.notNull())
    .addColumn("request_hash", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("model", "text")
    .addColumn("agent", "text")
    .addColumn("operation", "text")
    .addColumn("input_tokens", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("output_tokens", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("cost_micros", "bigint", (c) => c.notNull())
    .addColumn("input_price", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("output_price", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("invocation_price", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("api_key_id", "text")
    .addColumn("recorded_by_kind", "text", (c) => c.notNull())
    .addColumn("recorded_by", "text", (c) => c.notNull())
    .addColumn("authorization_id", "text")
    .addColumn("invocation", "text")
    .addColumn("attributes", "text", (c) => c.notNull().defaultTo("{}"))
    .addColumn("balance_after_micros", "bigint", (c) => c.notNull())
    .addColumn("occur_time", "bigint", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("usage_record_request").on("usage_record").columns(["project_id", "request_id"]).unique().execute();
  await db.schema.createIndex("usage_record_time").on("usage_record").columns(["project_id", "occur_time", "record_id"]).execute();
  await db.schema.createIndex("usage_record_model").on("usage_record").columns(["project_id", "model", "occur_time"]).execute();
  await db.schema.createIndex("usage_record_agent").on("usage_record").columns(["project_id", "agent", "occur_time"]).execute();
  await db.schema.createIndex("usage_record_key").on("usage_record").columns(["project_id", "api_key_id", "occur_time"]).execute();

  await db.schema
    .createTable("usage_rollup")
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("hour", "bigint", (c) => c.notNull())
    .addColumn("subject_kind", "text", (c) => c.notNull())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("input_tokens", "bigint", (c) => c.notNull())
    .addColumn("output_tokens", "bigint", (c) => c.notNull())
    .addColumn("requests", "bigint", (c) => c.notNull())
    .addColumn("cost_micros", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("usage_rollup_pk", ["project_id", "hour", "subject_kind", "subject"])
    .execute();

  await db.schema
    .createTable("usage_authorization")
    .addColumn("auth_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("request_id", "text", (c) => c.notNull())
    .addColumn("request_hash", "text", (c) => c.notNull())
    .addColumn("held_micros", "bigint", (c) => c.notNull())
    .addColumn("settled_micros", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("model", "text")
    .addColumn("agent", "text")
    .addColumn("api_key_id", "text")
    .addColumn("usage_record_id", "text")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("expire_time", "bigint", (c) => c.notNull())
    .addColumn("close_time", "bigint")
    .execute();
  await db.schema.createIndex("usage_authorization_request").on("usage_authorization").columns(["project_id", "request_id"]).unique().execute();
  await db.schema.createIndex("usage_authorization_held").on("usage_authorization").columns(["state", "expire_time"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ["usage_authorization", "usage_rollup", "usage_record", "credit_transaction"]) await db.schema.dropTable(t).execute();
}
