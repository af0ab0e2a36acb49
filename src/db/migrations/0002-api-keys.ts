import type { Kysely } from "kysely";

/** API keys (standard and scoped), their audit events, and the addresses each key was used from. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("api_key")
    .addColumn("key_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull().references("account.project_id").onDelete("cascade"))
    .addColumn("environment", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("display_name", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("secret_hash", "text", (c) => c.notNull())
    .addColumn("scopes", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("expire_time", "bigint")
    .addColumn("revoke_time", "bigint")
    .addColumn("revoke_reason", "text")
    .addColumn("rate_limit_rps", "integer")
    .addColumn("rate_limit_burst", "integer")
    .addColumn("spend_cap_micros", "bigint")
    .addColumn("spent_micros", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("allowed_cidrs", "text", (c) => c.notNull().defaultTo("[]"))
    .addColumn("allowed_models", "text", (c) => c.notNull().defaultTo("[]"))
    .addColumn("allowed_methods", "text", (c) => c.notNull().defaultTo("[]"))
    .addColumn("parent_key_id", "text", (c) => c.references("api_key.key_id"))
    .addColumn("replaced_by", "text")
    .addColumn("created_by_kind", "text", (c) => c.notNull())
    .addColumn("created_by", "text", (c) => c.notNull())
    .addColumn("creator_role", "text", (c) => c.notNull())
    .addColumn("create_request_id", "text")
    .addColumn("last_used_time", "bigint")
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .addColumn("update_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("api_key_project_time").on("api_key").columns(["project_id", "create_time", "key_id"]).execute();
  await db.schema.createIndex("api_key_parent").on("api_key").column("parent_key_id").execute();
  await db.schema
    .createIndex("api_key_request")
    .on("api_key")
    .columns(["project_id", "created_by", "create_request_id"])
    .unique()
    .execute();

  await db.schema
    .createTable("api_key_event")
    .addColumn("event_id", "text", (c) => c.primaryKey())
    .addColumn("project_id", "text", (c) => c.notNull())
    .addColumn("key_id", "text", (c) => c.notNull().references("api_key.key_id").onDelete("cascade"))
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("actor_kind", "text", (c) => c.notNull())
    .addColumn("actor", "text", (c) => c.notNull())
    .addColumn("actor_ip", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("details", "text", (c) => c.notNull().defaultTo("{}"))
    .addColumn("seq", "bigint", (c) => c.notNull())
    .addColumn("create_time", "bigint", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("api_key_event_project").on("api_key_event").columns(["project_id", "seq"]).execute();
  await db.schema.createIndex("api_key_event_key").on("api_key_event").columns(["key_id", "seq"]).execute();

  await db.schema
    .createTable("api_key_ip")
    .addColumn("key_id", "text", (c) => c.notNull().references("api_key.key_id").onDelete("cascade"))
    .addColumn("ip", "text", (c) => c.notNull())
    .addColumn("first_seen_time", "bigint", (c) => c.notNull())
    .addPrimaryKeyConstraint("api_key_ip_pk", ["key_id", "ip"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("api_key_ip").execute();
  await db.schema.dropTable("api_key_event").execute();
  await db.schema.dropTable("api_key").execute();
}
