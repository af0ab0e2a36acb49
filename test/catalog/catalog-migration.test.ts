/** Migration 0006 on a store that already has catalog rows from 0004. */
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import { afterAll, describe, expect, it } from "vitest";
import { migrationProvider } from "../../src/db/migrations/index.js";
import type { DatabaseSchema } from "../../src/db/schema.js";

const db = new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: new SqliteDatabase(":memory:") }) });
afterAll(() => db.destroy());

describe("0006-catalog-prices", () => {
  it("gives existing models their price from their create time, and makes platform-wide models public", async () => {
    const migrator = new Migrator({ db, provider: migrationProvider });
    expect((await migrator.migrateTo("0005-billing")).error).toBeUndefined();
    const model = { provider: "p", display_name: "", description: "", context_window: 0, status: "active", update_time: 9 };
    await db
      .insertInto("model")
      .values([
        { ...model, model_id: "p/own", owner_project: "a", input_price: 5, output_price: 6, visibility: "private", create_time: 100 },
        { ...model, model_id: "p/platform", owner_project: null, input_price: 7, output_price: 8, visibility: "private", create_time: 200 },
      ])
      .execute();
    const { error, results } = await migrator.migrateTo("0006-catalog-prices");
    expect(error).toBeUndefined();
    expect(results?.map((r) => [r.migrationName, r.status])).toEqual([["0006-catalog-prices", "Success"]]);
    expect(await db.selectFrom("model_price").selectAll().orderBy("model_id").execute()).toEqual([
      { model_id: "p/own", effective_from: 100, input_price: 5, output_price: 6 },
      { model_id: "p/platform", effective_from: 200, input_price: 7, output_price: 8 },
    ]);
    expect(await db.selectFrom("model").select(["model_id", "visibility", "created_by", "create_request_id"]).orderBy("model_id").execute()).toEqual([
      { model_id: "p/own", visibility: "private", created_by: null, create_request_id: null },
      { model_id: "p/platform", visibility: "public", created_by: null, create_request_id: null },
    ]);
  });

  it("allows one active hire of an agent per project, any number of released ones", async () => {
    await db.insertInto("account").values({ project_id: "a", display_name: "", billing_email: "", plan_tier: "free", subscription_status: "none", credit_balance_micros: 0, created_by: "s", create_request_id: null, create_time: 0, update_time: 0 }).execute();
    const hire = (id: string, state: string) => ({ hire_id: id, project_id: "a", agent_id: "x", state, hired_by: "s", request_id: null, create_time: 0, release_time: null });
    await db.insertInto("hire").values([hire("h1", "released"), hire("h2", "released"), hire("h3", "active")]).execute();
    await expect(db.insertInto("hire").values(hire("h4", "active")).execute()).rejects.toThrow(/UNIQUE constraint failed: hire.project_id, hire.agent_id/);
  });
});
