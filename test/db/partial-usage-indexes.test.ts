/**
 * Migration 0017: the filter indexes of usage records hold only the records
 * with a value (a model record enters no agent index, a JWT's record no key
 * index), one WAL page less per commit, and ListUsageRecords by model, agent
 * or key searches its own index in the list's order (before, SQLite walked the
 * project's time index and filtered every row): the plan of the query exactly
 * as UsageReports builds it. Up and down on a store with records.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import { type CompiledQuery, type KyselyPlugin, Migrator } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase } from "../../src/db/database.js";
import { migrationProvider } from "../../src/db/migrations/index.js";
import { UsageReports } from "../../src/usage/usage-reports.js";

const dir = mkdtempSync(join(tmpdir(), "formstate-partial-"));
const file = join(dir, "p.db");
let database: Database;

/** A usage record with the filter columns given (the others filled). */
function record(id: string, cols: { model: string | null; agent: string | null; api_key_id: string | null }) {
  return {
    record_id: id, project_id: "p", request_id: id, request_namespace: "usage", environment: "live", request_hash: "h", kind: cols.agent ? "agent" : "model",
    agent_owner: null, operation: null, input_tokens: 1, output_tokens: 1, cost_micros: 1, input_price: 1, output_price: 1, invocation_price: 0,
    recorded_by_kind: "user", recorded_by: "u", authorization_id: null, invocation: null, attributes: "{}", balance_after_micros: 0, occur_time: 1_000, create_time: 1_000, ...cols,
  };
}

beforeAll(async () => {
  database = await openDatabase(file);
});
afterAll(async () => {
  await database?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("0017-partial-usage-indexes", () => {
  it("each filter index holds only the records with its value", async () => {
    await database.db
      .insertInto("account")
      .values({ project_id: "p", display_name: "", billing_email: "", plan_tier: "free", subscription_status: "none", credit_balance_micros: 0, created_by: "u", create_request_id: null, create_time: 0, update_time: 0 })
      .execute();
    await database.db
      .insertInto("usage_record")
      .values([
        record("r1", { model: "models/p/m", agent: null, api_key_id: "k1" }),
        record("r2", { model: "models/p/m", agent: null, api_key_id: null }),
        record("r3", { model: null, agent: "agents/a", api_key_id: "k1" }),
      ])
      .execute();
    const other = new Sqlite(file, { readonly: true });
    try {
      // INDEXED BY reads through the index itself: its entries are exactly the non-null ones.
      const count = (index: string, column: string) => (other.prepare(`select count(*) as n from usage_record indexed by ${index} where project_id = 'p' and ${column} is not null`).get() as { n: number }).n;
      expect([count("usage_record_model", "model"), count("usage_record_agent", "agent"), count("usage_record_key", "api_key_id")]).toEqual([2, 1, 2]);
      const defs = other.prepare("select name, sql from sqlite_master where type = 'index' and name in ('usage_record_model', 'usage_record_agent', 'usage_record_key') order by name").all() as { name: string; sql: string }[];
      expect(defs.map((d) => [d.name, /where\s+"?(\w+)"?\s+is not null/i.exec(d.sql)?.[1]])).toEqual([
        ["usage_record_agent", "agent"],
        ["usage_record_key", "api_key_id"],
        ["usage_record_model", "model"],
      ]);
    } finally {
      other.close();
    }
  });

  it("ListUsageRecords by model, agent or key still searches that index", async () => {
    const captured: CompiledQuery[] = [];
    const spy: KyselyPlugin = {
      transformQuery: (args) => (captured.push(database.db.getExecutor().compileQuery(args.node, args.queryId)), args.node),
      transformResult: async (args) => args.result,
    };
    const reports = new UsageReports({ ...database, db: database.db.withPlugin(spy) }, { now: () => 2_000 });
    const other = new Sqlite(file, { readonly: true });
    try {
      for (const [filter, index] of [
        [{ model: "models/p/m" }, "usage_record_model"],
        [{ agent: "agents/a" }, "usage_record_agent"],
        [{ apiKeyId: "k1" }, "usage_record_key"],
        [{ model: "models/p/m", start: 0, end: 5_000 }, "usage_record_model"],
      ] as const) {
        captured.length = 0;
        const page = await reports.list("p", filter, 10, "");
        expect(page.items.length).toBeGreaterThan(0);
        const [q] = captured;
        const plan = (other.prepare(`explain query plan ${q.sql}`).all(...(q.parameters as unknown[])) as { detail: string }[]).map((r) => r.detail).join("; ");
        // Its own index, in the list's order (no sort step), not the project's whole time index filtered row by row.
        expect(plan, JSON.stringify(filter)).toContain(`USING INDEX ${index}`);
        expect(plan, JSON.stringify(filter)).not.toMatch(/TEMP B-TREE/);
      }
      // The next page (after the cursor) too.
      const first = await reports.list("p", { model: "models/p/m" }, 1, "");
      expect(first.nextPageToken).not.toBe("");
      captured.length = 0;
      expect((await reports.list("p", { model: "models/p/m" }, 1, first.nextPageToken)).items).toHaveLength(1);
      const next = (other.prepare(`explain query plan ${captured[0].sql}`).all(...(captured[0].parameters as unknown[])) as { detail: string }[]).map((r) => r.detail).join("; ");
      expect(next).toContain("USING INDEX usage_record_model");
      expect(next).not.toMatch(/TEMP B-TREE/);
    } finally {
      other.close();
    }
  });

  it("migrates down to full indexes and up again with the records in place", async () => {
    const migrator = new Migrator({ db: database.db, provider: migrationProvider });
    expect((await migrator.migrateTo("0016-test-mode-projects")).error).toBeUndefined();
    const sqlOf = async () => (await database.db.selectFrom("sqlite_master" as never).select("sql" as never).where("name" as never, "=", "usage_record_agent" as never).executeTakeFirstOrThrow()) as { sql: string };
    expect((await sqlOf()).sql).not.toMatch(/where/i);
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    expect((await sqlOf()).sql).toMatch(/where "agent" is not null/i);
    expect(await database.db.selectFrom("usage_record").select("record_id").orderBy("record_id").execute()).toEqual([{ record_id: "r1" }, { record_id: "r2" }, { record_id: "r3" }]);
  });
});
