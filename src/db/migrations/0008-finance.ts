import { type Kysely, sql } from "kysely";

/**
 * Books a finance team can sign (issue 17):
 * - usage rollups follow the report rules of src/usage/usage-rollups.ts:
 *   agent lines keep the token part of their cost, and tokens agents spend
 *   on a model get that model's `agent_model` line. Rollups are derived
 *   data, so they are rebuilt from the records.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("usage_rollup").addColumn("token_cost_micros", "bigint", (c) => c.notNull().defaultTo(0)).execute();
  await sql`DELETE FROM usage_rollup`.execute(db);
  const hour = sql`occur_time - (occur_time % 3600000)`;
  await sql`INSERT INTO usage_rollup (project_id, hour, subject_kind, subject, input_tokens, output_tokens, requests, cost_micros, token_cost_micros)
            SELECT project_id, ${hour}, kind, CASE WHEN kind = 'agent' THEN agent ELSE model END,
                   SUM(input_tokens), SUM(output_tokens), COUNT(*), SUM(cost_micros), SUM(cost_micros - invocation_price)
            FROM usage_record
            GROUP BY project_id, ${hour}, kind, CASE WHEN kind = 'agent' THEN agent ELSE model END`.execute(db);
  await sql`INSERT INTO usage_rollup (project_id, hour, subject_kind, subject, input_tokens, output_tokens, requests, cost_micros, token_cost_micros)
            SELECT project_id, ${hour}, 'agent_model', model,
                   SUM(input_tokens), SUM(output_tokens), COUNT(*), SUM(cost_micros - invocation_price), SUM(cost_micros - invocation_price)
            FROM usage_record
            WHERE kind = 'agent' AND model IS NOT NULL
            GROUP BY project_id, ${hour}, model`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DELETE FROM usage_rollup WHERE subject_kind = 'agent_model'`.execute(db);
  await db.schema.alterTable("usage_rollup").dropColumn("token_cost_micros").execute();
}
