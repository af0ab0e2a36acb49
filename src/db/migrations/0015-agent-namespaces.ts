import { type Kysely, sql } from "kysely";

/**
 * Agent ids are namespaced by project (issue 14): an agent is keyed by
 * (owner_project, agent_id), so another project's private id is free to take
 * and never answers ALREADY_EXISTS. Public agents keep one namespace among
 * themselves (a unique index on agent_id where visibility is public), so
 * `agents/{id}` still names one public agent.
 * - agent: rebuilt with the pair as its primary key (SQLite cannot change a
 *   primary key in place; the same steps run on PostgreSQL);
 * - agent_price: rebuilt with owner_project in its primary key;
 * - hire: `agent_owner` beside agent_id; the one-active-hire rule and the
 *   agent index take the pair;
 * - usage_record: `agent_owner`, the project whose agent was charged (the
 *   publisher earnings are booked to).
 * Every existing row is carried over: ids were unique before, so each
 * hire, price and usage record gets the owner of the agent of its id. A hire
 * or record of an agent deleted before this migration keeps agent_owner
 * null (its hires are all released; no earnings are booked again).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("agent_v2")
    .addColumn("agent_id", "text", (c) => c.notNull())
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
    .addColumn("created_by", "text")
    .addColumn("create_request_id", "text")
    .addColumn("publisher_share_bps", "integer")
    .addPrimaryKeyConstraint("agent_owner_id_pk", ["owner_project", "agent_id"])
    .execute();
  await sql`INSERT INTO agent_v2 (agent_id, owner_project, display_name, description, models, price_per_invocation, status, visibility, shared_with, create_time, update_time, created_by, create_request_id, publisher_share_bps)
            SELECT agent_id, owner_project, display_name, description, models, price_per_invocation, status, visibility, shared_with, create_time, update_time, created_by, create_request_id, publisher_share_bps FROM agent`.execute(db);
  await db.schema.dropTable("agent").execute();
  await db.schema.alterTable("agent_v2").renameTo("agent").execute();
  // `agents/{id}` names at most one public agent: making a second one public answers ALREADY_EXISTS.
  await db.schema.createIndex("agent_public_id").on("agent").column("agent_id").unique().where(sql.ref("visibility"), "=", "public").execute();
  // Resolving a name reads every candidate of an id (own, public, shared), on the metering path too.
  await db.schema.createIndex("agent_by_id").on("agent").column("agent_id").execute();

  await db.schema
    .createTable("agent_price_v2")
    .addColumn("owner_project", "text", (c) => c.notNull())
    .addColumn("agent_id", "text", (c) => c.notNull())
    .addColumn("effective_from", "bigint", (c) => c.notNull())
    .addColumn("price_per_invocation", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("agent_price_owner_pk", ["owner_project", "agent_id", "effective_from"])
    .execute();
  await sql`INSERT INTO agent_price_v2 (owner_project, agent_id, effective_from, price_per_invocation)
            SELECT a.owner_project, p.agent_id, p.effective_from, p.price_per_invocation FROM agent_price p JOIN agent a ON a.agent_id = p.agent_id`.execute(db);
  await db.schema.dropTable("agent_price").execute();
  await db.schema.alterTable("agent_price_v2").renameTo("agent_price").execute();

  await db.schema.alterTable("hire").addColumn("agent_owner", "text").execute();
  await sql`UPDATE hire SET agent_owner = (SELECT a.owner_project FROM agent a WHERE a.agent_id = hire.agent_id)`.execute(db);
  await db.schema.dropIndex("hire_one_active").execute();
  await db.schema.dropIndex("hire_agent").execute();
  await db.schema.createIndex("hire_one_active").on("hire").columns(["project_id", "agent_owner", "agent_id"]).unique().where(sql.ref("state"), "=", "active").execute();
  await db.schema.createIndex("hire_agent").on("hire").columns(["agent_owner", "agent_id", "state"]).execute();

  await db.schema.alterTable("usage_record").addColumn("agent_owner", "text").execute();
  await sql`UPDATE usage_record SET agent_owner = (SELECT a.owner_project FROM agent a WHERE 'agents/' || a.agent_id = usage_record.agent) WHERE agent IS NOT NULL`.execute(db);
}

/** Back to one namespace; fails (and changes nothing on PostgreSQL) while two projects hold the same agent id. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("usage_record").dropColumn("agent_owner").execute();
  await db.schema.dropIndex("hire_agent").execute();
  await db.schema.dropIndex("hire_one_active").execute();
  await db.schema.alterTable("hire").dropColumn("agent_owner").execute();
  await db.schema.createIndex("hire_one_active").on("hire").columns(["project_id", "agent_id"]).unique().where(sql.ref("state"), "=", "active").execute();
  await db.schema.createIndex("hire_agent").on("hire").columns(["agent_id", "state"]).execute();

  await db.schema
    .createTable("agent_price_v1")
    .addColumn("agent_id", "text", (c) => c.notNull())
    .addColumn("effective_from", "bigint", (c) => c.notNull())
    .addColumn("price_per_invocation", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("agent_price_pk", ["agent_id", "effective_from"])
    .execute();
  await sql`INSERT INTO agent_price_v1 (agent_id, effective_from, price_per_invocation) SELECT agent_id, effective_from, price_per_invocation FROM agent_price`.execute(db);
  await db.schema.dropTable("agent_price").execute();
  await db.schema.alterTable("agent_price_v1").renameTo("agent_price").execute();

  await db.schema.dropIndex("agent_public_id").execute();
  await db.schema
    .createTable("agent_v1")
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
    .addColumn("created_by", "text")
    .addColumn("create_request_id", "text")
    .addColumn("publisher_share_bps", "integer")
    .execute();
  await sql`INSERT INTO agent_v1 SELECT agent_id, owner_project, display_name, description, models, price_per_invocation, status, visibility, shared_with, create_time, update_time, created_by, create_request_id, publisher_share_bps FROM agent`.execute(db);
  await db.schema.dropTable("agent").execute();
  await db.schema.alterTable("agent_v1").renameTo("agent").execute();
}
