/**
 * Migration 0015 (agents keyed by owner and id) on a store that already has
 * agents, prices, hires and usage records from 0014: every row is carried
 * over exactly, each reference gets its agent's owner, and afterwards ids are
 * per project (public ones unique among public agents). On SQLite, and on
 * PostgreSQL too when DATABASE_URL names one (`npm run test:pg`).
 */
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import { afterAll, describe, expect, it } from "vitest";
import { migrationProvider } from "../../src/db/migrations/index.js";
import { ensureSchema, openPostgres } from "../../src/db/postgres.js";
import type { DatabaseSchema } from "../../src/db/schema.js";
import { dropPostgresSchema } from "../support/postgres.js";

type Db = Kysely<DatabaseSchema>;
const pgUrl = /^postgres(ql)?:\/\//.test(process.env.DATABASE_URL ?? "") ? process.env.DATABASE_URL! : undefined;

interface Store {
  db: Db;
  /** PostgreSQL: the test's own schema, where the migration tables must be looked for (not in any schema of the database). */
  schema?: string;
  close(): Promise<void>;
}

function sqliteStore(): Store {
  const db = new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: new SqliteDatabase(":memory:") }) });
  return { db, close: () => db.destroy() };
}

async function postgresStore(url: string): Promise<Store> {
  const schema = `t_agentns_${Math.random().toString(36).slice(2, 10)}`;
  const u = new URL(url);
  u.searchParams.set("schema", schema);
  const { database } = openPostgres(u.toString(), { poolSize: 2 });
  await ensureSchema(database.db, schema);
  return {
    db: database.db,
    schema,
    close: async () => {
      await database.close();
      await dropPostgresSchema(schema, url);
    },
  };
}

const stores: Array<[string, () => Promise<Store>]> = [["SQLite", async () => sqliteStore()], ...(pgUrl ? [["PostgreSQL", () => postgresStore(pgUrl)] as [string, () => Promise<Store>]] : [])];

const agent = (id: string, owner: string, visibility: string, price: number, create: number) => ({
  agent_id: id,
  owner_project: owner,
  display_name: `${id} of ${owner}`,
  description: "d",
  models: '["models/p/m"]',
  price_per_invocation: price,
  status: "active",
  visibility,
  shared_with: "[]",
  publisher_share_bps: visibility === "public" ? 8_000 : null,
  created_by: "someone",
  create_request_id: `r-${id}`,
  create_time: create,
  update_time: create + 1,
});

const hire = (id: string, project: string, agentId: string, state: string) => ({
  hire_id: id,
  project_id: project,
  agent_id: agentId,
  state,
  hired_by: "s",
  request_id: null,
  create_time: 5,
  release_time: state === "released" ? 6 : null,
});

const record = (id: string, project: string, kind: string, agentName: string | null) => ({
  record_id: id,
  project_id: project,
  request_id: id,
  request_namespace: "usage",
  environment: "live",
  request_hash: "h",
  kind,
  model: kind === "model" ? "models/p/m" : null,
  agent: agentName,
  operation: agentName ? "op" : null,
  input_tokens: 0,
  output_tokens: 0,
  cost_micros: 10,
  input_price: 0,
  output_price: 0,
  invocation_price: 10,
  api_key_id: null,
  recorded_by_kind: "user",
  recorded_by: "s",
  authorization_id: null,
  invocation: null,
  attributes: "{}",
  balance_after_micros: 0,
  occur_time: 7,
  create_time: 7,
});

describe.each(stores)("0015-agent-namespaces on %s", (_name, open) => {
  let store: Store;
  afterAll(async () => {
    await store?.close();
  });

  it("carries every agent, price, hire and usage record over with its agent's owner", async () => {
    store = await open();
    const { db } = store;
    const migrator = new Migrator({ db, provider: migrationProvider, migrationTableSchema: store.schema });
    expect((await migrator.migrateTo("0014-sandbox")).error).toBeUndefined();
    const account = { display_name: "", billing_email: "", plan_tier: "free", subscription_status: "none", credit_balance_micros: 0, created_by: "s", create_request_id: null, create_time: 0, update_time: 0 };
    await db.insertInto("account").values(["a", "b", "c"].map((p) => ({ ...account, project_id: p })) as never).execute();
    const agents = [agent("ag-pub", "a", "public", 12, 100), agent("ag-priv", "b", "private", 5, 150), agent("ag-shared", "a", "shared", 3, 160)];
    await db.insertInto("agent").values(agents).execute();
    await db
      .insertInto("agent_price")
      .values([
        { agent_id: "ag-pub", effective_from: 100, price_per_invocation: 10 },
        { agent_id: "ag-pub", effective_from: 200, price_per_invocation: 12 },
        { agent_id: "ag-priv", effective_from: 150, price_per_invocation: 5 },
        { agent_id: "ag-shared", effective_from: 160, price_per_invocation: 3 },
      ] as never)
      .execute();
    await db.insertInto("hire").values([hire("h1", "c", "ag-pub", "active"), hire("h2", "b", "ag-priv", "active"), hire("h3", "c", "ag-gone", "released")] as never).execute();
    await db
      .insertInto("usage_record")
      .values([record("u1", "c", "agent", "agents/ag-pub"), record("u2", "c", "model", null), record("u3", "c", "agent", "agents/ag-gone")] as never)
      .execute();

    const { error, results } = await migrator.migrateTo("0015-agent-namespaces");
    expect(error).toBeUndefined();
    expect(results?.map((r) => [r.migrationName, r.status])).toEqual([["0015-agent-namespaces", "Success"]]);

    expect(await db.selectFrom("agent").selectAll().orderBy("agent_id").execute()).toEqual([...agents].sort((x, y) => (x.agent_id < y.agent_id ? -1 : 1)));
    expect(await db.selectFrom("agent_price").selectAll().orderBy("agent_id").orderBy("effective_from").execute()).toEqual([
      { owner_project: "b", agent_id: "ag-priv", effective_from: 150, price_per_invocation: 5 },
      { owner_project: "a", agent_id: "ag-pub", effective_from: 100, price_per_invocation: 10 },
      { owner_project: "a", agent_id: "ag-pub", effective_from: 200, price_per_invocation: 12 },
      { owner_project: "a", agent_id: "ag-shared", effective_from: 160, price_per_invocation: 3 },
    ]);
    expect(await db.selectFrom("hire").selectAll().orderBy("hire_id").execute()).toEqual([
      { ...hire("h1", "c", "ag-pub", "active"), agent_owner: "a" },
      { ...hire("h2", "b", "ag-priv", "active"), agent_owner: "b" },
      { ...hire("h3", "c", "ag-gone", "released"), agent_owner: null },
    ]);
    expect(await db.selectFrom("usage_record").select(["record_id", "agent", "agent_owner", "cost_micros"]).orderBy("record_id").execute()).toEqual([
      { record_id: "u1", agent: "agents/ag-pub", agent_owner: "a", cost_micros: 10 },
      { record_id: "u2", agent: null, agent_owner: null, cost_micros: 10 },
      { record_id: "u3", agent: "agents/ag-gone", agent_owner: null, cost_micros: 10 },
    ]);
  });

  it("then keys agents by owner and id: a private id is free to others, a public id is not, and one active hire per agent", async () => {
    const { db } = store;
    await db.insertInto("agent").values(agent("ag-priv", "c", "private", 1, 300)).execute();
    await db.insertInto("agent").values(agent("ag-priv", "a", "public", 1, 300)).execute();
    await expect(db.insertInto("agent").values(agent("ag-priv", "c", "private", 1, 300)).execute()).rejects.toThrow(/UNIQUE|duplicate key/);
    await expect(db.insertInto("agent").values(agent("ag-pub", "c", "public", 1, 300)).execute()).rejects.toThrow(/UNIQUE|duplicate key/);
    await db.insertInto("agent_price").values({ owner_project: "c", agent_id: "ag-pub", effective_from: 100, price_per_invocation: 1 }).execute();
    // c hires b's ag-priv beside a's: different agents; a second active hire of the same one is refused.
    await db.insertInto("hire").values({ ...hire("h4", "c", "ag-priv", "active"), agent_owner: "b" }).execute();
    await db.insertInto("hire").values({ ...hire("h5", "c", "ag-priv", "active"), agent_owner: "a" }).execute();
    await expect(db.insertInto("hire").values({ ...hire("h6", "c", "ag-priv", "active"), agent_owner: "b" }).execute()).rejects.toThrow(/UNIQUE|duplicate key/);
  });
});
