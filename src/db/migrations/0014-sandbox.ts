import { type Kysely, sql } from "kysely";

/**
 * Test mode for real (issue 17, docs/test-mode.md): a project's usage by
 * `fs_test_` keys goes to a sandbox ledger of its own.
 * - account: a second balance, `test_credit_balance_micros`;
 * - credit_transaction, usage_record, usage_authorization: an `environment`
 *   (live or test; existing rows are live), part of every uniqueness rule, so
 *   idempotency keys, request ids and ledger sequences never collide between
 *   modes;
 * - usage_rollup: rebuilt with `environment` in its primary key (SQLite cannot
 *   change a primary key in place), so test usage never reaches live reports.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("account").addColumn("test_credit_balance_micros", "bigint", (c) => c.notNull().defaultTo(0)).execute();

  await db.schema.alterTable("credit_transaction").addColumn("environment", "text", (c) => c.notNull().defaultTo("live")).execute();
  for (const name of ["credit_transaction_seq", "credit_transaction_idem", "credit_transaction_time"]) await db.schema.dropIndex(name).execute();
  await db.schema.createIndex("credit_transaction_seq").on("credit_transaction").columns(["project_id", "environment", "seq"]).unique().execute();
  await db.schema.createIndex("credit_transaction_idem").on("credit_transaction").columns(["project_id", "environment", "idempotency_key"]).unique().execute();
  await db.schema.createIndex("credit_transaction_time").on("credit_transaction").columns(["project_id", "environment", "create_time"]).execute();

  await db.schema.alterTable("usage_record").addColumn("environment", "text", (c) => c.notNull().defaultTo("live")).execute();
  await db.schema.dropIndex("usage_record_request").execute();
  await db.schema.createIndex("usage_record_request").on("usage_record").columns(["project_id", "environment", "request_namespace", "request_id"]).unique().execute();

  await db.schema.alterTable("usage_authorization").addColumn("environment", "text", (c) => c.notNull().defaultTo("live")).execute();
  await db.schema.dropIndex("usage_authorization_request").execute();
  await db.schema.createIndex("usage_authorization_request").on("usage_authorization").columns(["project_id", "environment", "request_id"]).unique().execute();

  await db.schema
    .createTable("usage_rollup_v2")
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("environment", "text", (c) => c.notNull())
    .addColumn("hour", "bigint", (c) => c.notNull())
    .addColumn("subject_kind", "text", (c) => c.notNull())
    .addColumn("subject", "text", (c) => c.notNull())
    .addColumn("input_tokens", "bigint", (c) => c.notNull())
    .addColumn("output_tokens", "bigint", (c) => c.notNull())
    .addColumn("requests", "bigint", (c) => c.notNull())
    .addColumn("cost_micros", "bigint", (c) => c.notNull())
    .addColumn("token_cost_micros", "bigint", (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint("usage_rollup_env_pk", ["project_id", "environment", "hour", "subject_kind", "subject"])
    .execute();
  await sql`INSERT INTO usage_rollup_v2 (project_id, environment, hour, subject_kind, subject, input_tokens, output_tokens, requests, cost_micros, token_cost_micros)
            SELECT project_id, 'live', hour, subject_kind, subject, input_tokens, output_tokens, requests, cost_micros, token_cost_micros FROM usage_rollup`.execute(db);
  await db.schema.dropTable("usage_rollup").execute();
  await db.schema.alterTable("usage_rollup_v2").renameTo("usage_rollup").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DELETE FROM usage_rollup WHERE environment <> 'live'`.execute(db);
  await sql`DELETE FROM credit_transaction WHERE environment <> 'live'`.execute(db);
  await sql`DELETE FROM usage_record WHERE environment <> 'live'`.execute(db);
  await sql`DELETE FROM usage_authorization WHERE environment <> 'live'`.execute(db);
  await db.schema.dropIndex("usage_authorization_request").execute();
  await db.schema.createIndex("usage_authorization_request").on("usage_authorization").columns(["project_id", "request_id"]).unique().execute();
  await db.schema.alterTable("usage_authorization").dropColumn("environment").execute();
  await db.schema.dropIndex("usage_record_request").execute();
  await db.schema.createIndex("usage_record_request").on("usage_record").columns(["project_id", "request_namespace", "request_id"]).unique().execute();
  await db.schema.alterTable("usage_record").dropColumn("environment").execute();
  for (const name of ["credit_transaction_seq", "credit_transaction_idem", "credit_transaction_time"]) await db.schema.dropIndex(name).execute();
  await db.schema.createIndex("credit_transaction_seq").on("credit_transaction").columns(["project_id", "seq"]).unique().execute();
  await db.schema.createIndex("credit_transaction_idem").on("credit_transaction").columns(["project_id", "idempotency_key"]).unique().execute();
  await db.schema.createIndex("credit_transaction_time").on("credit_transaction").columns(["project_id", "create_time"]).execute();
  await db.schema.alterTable("credit_transaction").dropColumn("environment").execute();
  await db.schema.alterTable("account").dropColumn("test_credit_balance_micros").execute();
}
