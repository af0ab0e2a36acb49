import type { Kysely } from "kysely";

/** Accounts (one per project) and their members. Times are epoch milliseconds. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("account")
    .addColumn("project_id", "text", (c) => c.primaryKey())
    .addColumn("display_name", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("billing_email", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("plan_tier", "text", (c) => c.notNull().defaultTo("free"))
    .addColumn("subscription_status", "text", (c) => c.notNull().defaultTo("none"))
    .addColumn("credit_balance_micros", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("created_by", "text", (c) => c.notNull())
    .addColumn("create_request_id", "text")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("member")
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("user_id", "text", (c) => c.notNull())
    .addColumn("role", "text", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("member_pk", ["project_id", "user_id"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("member").execute();
  await db.schema.dropTable("account").execute();
}
