import type { Kysely } from "kysely";

/** The marketplace catalog: models, agents, and the hires that put agents into a project's slots. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("model")
    .addColumn("model_id", "text", (c) => c.primaryKey())
    .addColumn("owner_project", "text")
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("display_name", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("description", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("context_window", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("input_price", "bigint", (c) => c.notNull())
    .addColumn("output_price", "bigint", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("visibility", "text", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("agent")
    .addColumn("agent_id", "text", (c) => c.primaryKey())
    .addColumn("owner_project", "text", (c) => c.notNull())
    .addColumn("display_name", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("description", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("models", "text", (c) => c.notNull().defaultTo("[]"))
    .addColumn("price_per_invocation", "bigint", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("visibility", "text", (c) => c.notNull())
    .addColumn("shared_with", "text", (c) => c.notNull().defaultTo("[]"))
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("hire")
    .addColumn("hire_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("agent_id", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("hired_by", "text", (c) => c.notNull())
    .addColumn("request_id", "text")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("release_time", "bigint")
    .execute();
  await db.schema.createIndex("hire_project").on("hire").columns(["project_id", "state", "create_time"]).execute();
  await db.schema.createIndex("hire_agent").on("hire").columns(["agent_id", "state"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const t of ["hire", "agent", "model"]) await db.schema.dropTable(t).execute();
}
