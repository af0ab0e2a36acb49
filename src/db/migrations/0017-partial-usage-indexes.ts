import { type Kysely, sql } from "kysely";

/**
 * The filter indexes of usage records (ListUsageRecords by model, agent or
 * key; a key's spend alerts), rebuilt:
 * - ending in `record_id`, so they give ListUsageRecords' order (occur_time,
 *   record_id, newest first) by themselves. Without it SQLite never chose
 *   them: it walked the project's whole time index and filtered each row, to
 *   avoid sorting (a rare model's page read every record of the project);
 * - holding only the records that have the value: a model record has no
 *   agent, an agent operation without tokens no model, a record made with a
 *   JWT no key. Every index a record enters is a page its commit writes to
 *   the WAL (15 for a model record by API key, 14 now), and entries for NULL
 *   were never read: every query of these indexes asks for one value
 *   (`agent = ?`), which SQLite and PostgreSQL both know implies `IS NOT NULL`.
 * test/db/partial-usage-indexes.test.ts checks the plans.
 */
const FILTERS = [
  ["usage_record_model", "model"],
  ["usage_record_agent", "agent"],
  ["usage_record_key", "api_key_id"],
] as const;

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [name, column] of FILTERS) {
    await db.schema.dropIndex(name).execute();
    await db.schema.createIndex(name).on("usage_record").columns(["project_id", column, "occur_time", "record_id"]).where(sql.ref(column), "is not", null).execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const [name, column] of FILTERS) {
    await db.schema.dropIndex(name).execute();
    await db.schema.createIndex(name).on("usage_record").columns(["project_id", column, "occur_time"]).execute();
  }
}
