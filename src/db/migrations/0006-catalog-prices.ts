import { type Kysely, sql } from "kysely";

/**
 * The catalog, second step: every price a model has had (so usage can be
 * priced at a point in time); who created each model and agent with which
 * request_id (so a retried create returns the first answer); at most one
 * active hire of an agent per project. Existing models get their current
 * price as their first price, from their create time.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("model_price")
    .addColumn("model_id", "text", (c) => c.notNull())
    .addColumn("effective_from", "bigint", (c) => c.notNull())
    .addColumn("input_price", "bigint", (c) => c.notNull())
    .addColumn("output_price", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("model_price_pk", ["model_id", "effective_from"])
    .execute();
  await sql`INSERT INTO model_price (model_id, effective_from, input_price, output_price)
            SELECT model_id, create_time, input_price, output_price FROM model`.execute(db);
  for (const table of ["model", "agent"]) {
    await db.schema.alterTable(table).addColumn("created_by", "text").execute();
    await db.schema.alterTable(table).addColumn("create_request_id", "text").execute();
  }
  // At most one active hire of an agent per project (HireAgent also checks, inside its write transaction).
  await db.schema.createIndex("hire_one_active").on("hire").columns(["project_id", "agent_id"]).unique().where(sql.ref("state"), "=", "active").execute();
  // Platform-wide models are seen by every project: say so.
  await sql`UPDATE model SET visibility = 'public' WHERE owner_project IS NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("hire_one_active").execute();
  for (const table of ["model", "agent"]) {
    await db.schema.alterTable(table).dropColumn("create_request_id").execute();
    await db.schema.alterTable(table).dropColumn("created_by").execute();
  }
  await db.schema.dropTable("model_price").execute();
}
