import type { Kysely } from "kysely";

/**
 * Wallet bindings (a CAIP-10 account acting as the user who bound it), their
 * single-use challenges, sign-in sessions of every credential kind, revoke-all
 * cut-offs, and the budgets that wallet tokens carry in their claims.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("wallet_challenge")
    .addColumn("nonce", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("account_id", "text", (c) => c.notNull())
    .addColumn("user_id", "text", (c) => c.notNull())
    .addColumn("message", "text", (c) => c.notNull())
    .addColumn("expire_time", "bigint", (c) => c.notNull())
    .addColumn("use_time", "bigint")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("wallet_binding")
    .addColumn("binding_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    // One project per wallet: a token names no project, the binding does.
    .addColumn("account_id", "text", (c) => c.notNull().unique())
    .addColumn("chain_id", "text", (c) => c.notNull())
    .addColumn("user_id", "text", (c) => c.notNull())
    .addColumn("role", "text", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("wallet_binding_project").on("wallet_binding").columns(["project_id", "create_time", "binding_id"]).execute();

  await db.schema
    .createTable("auth_session")
    .addColumn("session_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("last_seen_time", "bigint", (c) => c.notNull())
    .addColumn("expire_time", "bigint")
    .addColumn("revoke_time", "bigint")
    .addColumn("revoke_reason", "text")
    .addColumn("budget_id", "text")
    .execute();
  await db.schema.createIndex("auth_session_project_seen").on("auth_session").columns(["project_id", "last_seen_time", "session_id"]).execute();
  await db.schema.createIndex("auth_session_subject").on("auth_session").columns(["project_id", "subject", "create_time"]).execute();

  await db.schema
    .createTable("session_cutoff")
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("revoke_before", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("session_cutoff_pk", ["project_id", "subject"])
    .execute();

  await db.schema
    .createTable("wallet_budget")
    .addColumn("budget_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("limit_micros", "bigint", (c) => c.notNull())
    .addColumn("spent_micros", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("rounds_limit", "bigint")
    .addColumn("rounds_used", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("window_ms", "bigint")
    .addColumn("window_start", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .execute();

  // A hold placed under a wallet budget returns to that budget when released or expired.
  await db.schema.alterTable("usage_authorization").addColumn("budget_id", "text").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("usage_authorization").dropColumn("budget_id").execute();
  for (const t of ["wallet_budget", "session_cutoff", "auth_session", "wallet_binding", "wallet_challenge"]) await db.schema.dropTable(t).execute();
}
