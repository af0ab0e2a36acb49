import type { Kysely } from "kysely";

/**
 * Test-mode projects (issue 17, docs/test-mode.md): `account.environment`,
 * live or test, fixed when the account is created. In a test-mode project
 * every caller meters against the sandbox ledger (migration 0014), so
 * nothing of it reaches the live ledger, Stripe or publisher earnings.
 * Existing accounts are live.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("account").addColumn("environment", "text", (c) => c.notNull().defaultTo("live")).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("account").dropColumn("environment").execute();
}
