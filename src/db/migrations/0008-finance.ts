import { type Kysely, sql } from "kysely";

/**
 * Books a finance team can sign (issue 17):
 * - usage rollups follow the report rules of src/usage/usage-rollups.ts:
 *   agent lines keep the token part of their cost, and tokens agents spend
 *   on a model get that model's `agent_model` line. Rollups are derived
 *   data, so they are rebuilt from the records.
 * - InvokeAgent's request ids get their own namespace (they shared
 *   RecordUsage's behind an `invoke:` prefix, so a RecordUsage id could
 *   block an invocation): usage records are unique per (project, namespace,
 *   request_id), and the debits of invocations are keyed `invoke:{id}`.
 * - A fulfilled credit purchase keeps its PaymentIntent, so a refund or a
 *   dispute of its charge finds the credits it bought.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("checkout_fulfillment").addColumn("payment_intent_id", "text").execute();
  await db.schema.createIndex("checkout_fulfillment_payment_intent").on("checkout_fulfillment").column("payment_intent_id").execute();
  await db.schema.alterTable("usage_record").addColumn("request_namespace", "text", (c) => c.notNull().defaultTo("usage")).execute();
  await sql`UPDATE credit_transaction SET idempotency_key = 'invoke:' || substr(idempotency_key, 14)
            WHERE idempotency_key LIKE 'usage:invoke:%'
              AND usage_record_id IN (SELECT record_id FROM usage_record WHERE invocation IS NOT NULL)`.execute(db);
  await sql`UPDATE usage_record SET request_namespace = 'invoke', request_id = substr(request_id, 8)
            WHERE invocation IS NOT NULL AND request_id LIKE 'invoke:%'`.execute(db);
  await db.schema.dropIndex("usage_record_request").execute();
  await db.schema.createIndex("usage_record_request").on("usage_record").columns(["project_id", "request_namespace", "request_id"]).unique().execute();
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
  await db.schema.dropIndex("checkout_fulfillment_payment_intent").execute();
  await db.schema.alterTable("checkout_fulfillment").dropColumn("payment_intent_id").execute();
  await sql`DELETE FROM usage_rollup WHERE subject_kind = 'agent_model'`.execute(db);
  await db.schema.alterTable("usage_rollup").dropColumn("token_cost_micros").execute();
}
