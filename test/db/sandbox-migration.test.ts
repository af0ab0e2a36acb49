/** Migration 0014 on a store that already has ledger, usage and catalog rows: everything existing is live. */
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import { afterAll, describe, expect, it } from "vitest";
import { migrationProvider } from "../../src/db/migrations/index.js";
import type { DatabaseSchema } from "../../src/db/schema.js";

const db = new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: new SqliteDatabase(":memory:") }) });
afterAll(() => db.destroy());

describe("0014-sandbox", () => {
  it("keeps existing rows as live, rebuilds rollups with their environment, and gives agents their price history", async () => {
    const migrator = new Migrator({ db, provider: migrationProvider });
    expect((await migrator.migrateTo("0008-finance")).error).toBeUndefined();
    await db.insertInto("account").values({ project_id: "a", display_name: "", billing_email: "", plan_tier: "free", subscription_status: "none", credit_balance_micros: 40, created_by: "s", create_request_id: null, create_time: 0, update_time: 0 } as never).execute();
    const entry = { project_id: "a", description: "", usage_record_id: null, authorization_id: null, actor: "", create_time: 1 };
    await db
      .insertInto("credit_transaction")
      .values([
        { ...entry, tx_id: "t1", seq: 1, kind: "grant", amount_micros: 100, balance_after_micros: 100, idempotency_key: "grant:x" },
        { ...entry, tx_id: "t2", seq: 2, kind: "usage_debit", amount_micros: -60, balance_after_micros: 40, idempotency_key: "usage:r1" },
      ] as never)
      .execute();
    await db
      .insertInto("usage_rollup")
      .values({ project_id: "a", hour: 3_600_000, subject_kind: "model", subject: "models/p/m", input_tokens: 6, output_tokens: 0, requests: 1, cost_micros: 60, token_cost_micros: 60 } as never)
      .execute();
    await db
      .insertInto("agent")
      .values({ agent_id: "ag", owner_project: "a", display_name: "", description: "", models: "[]", price_per_invocation: 250, status: "active", visibility: "private", shared_with: "[]", created_by: null, create_request_id: null, create_time: 77, update_time: 99 })
      .execute();

    const { error } = await migrator.migrateTo("0014-sandbox");
    expect(error).toBeUndefined();
    expect(await db.selectFrom("account").select(["credit_balance_micros", "test_credit_balance_micros"]).executeTakeFirst()).toEqual({ credit_balance_micros: 40, test_credit_balance_micros: 0 });
    expect((await db.selectFrom("credit_transaction").select("environment").execute()).map((r) => r.environment)).toEqual(["live", "live"]);
    expect(await db.selectFrom("usage_rollup").selectAll().execute()).toEqual([
      { project_id: "a", environment: "live", hour: 3_600_000, subject_kind: "model", subject: "models/p/m", input_tokens: 6, output_tokens: 0, requests: 1, cost_micros: 60, token_cost_micros: 60 },
    ]);
    expect(await db.selectFrom("agent_price").selectAll().execute()).toEqual([{ agent_id: "ag", effective_from: 77, price_per_invocation: 250 }]);

    // Idempotency keys and sequences are per environment: the sandbox may reuse them, live may not.
    const again = { ...entry, kind: "usage_debit", amount_micros: -1, balance_after_micros: 0, idempotency_key: "usage:r1" };
    await db.insertInto("credit_transaction").values({ ...again, tx_id: "t3", seq: 1, environment: "test" }).execute();
    await expect(db.insertInto("credit_transaction").values({ ...again, tx_id: "t4", seq: 3, environment: "live" }).execute()).rejects.toThrow(/UNIQUE constraint failed/);
    // Rollup lines of the two environments never merge.
    await db.insertInto("usage_rollup").values({ project_id: "a", environment: "test", hour: 3_600_000, subject_kind: "model", subject: "models/p/m", input_tokens: 1, output_tokens: 0, requests: 1, cost_micros: 1, token_cost_micros: 1 }).execute();
    expect(await db.selectFrom("usage_rollup").select(["environment", "cost_micros"]).orderBy("environment").execute()).toEqual([
      { environment: "live", cost_micros: 60 },
      { environment: "test", cost_micros: 1 },
    ]);
  });
});
