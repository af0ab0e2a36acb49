/** Migration 0016 on a store that already has accounts: every existing project stays live; the down migration drops the column. */
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import { afterAll, describe, expect, it } from "vitest";
import { migrationProvider } from "../../src/db/migrations/index.js";
import type { DatabaseSchema } from "../../src/db/schema.js";

const db = new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: new SqliteDatabase(":memory:") }) });
afterAll(() => db.destroy());

describe("0016-test-mode-projects", () => {
  it("keeps existing accounts live and records a new account's mode", async () => {
    const migrator = new Migrator({ db, provider: migrationProvider });
    expect((await migrator.migrateTo("0014-sandbox")).error).toBeUndefined();
    const account = { display_name: "", billing_email: "", plan_tier: "free", subscription_status: "none", credit_balance_micros: 40, created_by: "s", create_request_id: null, create_time: 0, update_time: 0 };
    await db.insertInto("account").values({ ...account, project_id: "old" } as never).execute();

    expect((await migrator.migrateTo("0016-test-mode-projects")).error).toBeUndefined();
    expect(await db.selectFrom("account").select(["project_id", "environment", "credit_balance_micros"]).execute()).toEqual([{ project_id: "old", environment: "live", credit_balance_micros: 40 }]);
    await db.insertInto("account").values({ ...account, project_id: "sandbox", environment: "test" }).execute();
    expect((await db.selectFrom("account").select("environment").where("project_id", "=", "sandbox").executeTakeFirstOrThrow()).environment).toBe("test");

    // Down: the column goes, the accounts stay.
    expect((await migrator.migrateTo("0014-sandbox")).error).toBeUndefined();
    const rows = await db.selectFrom("account").selectAll().orderBy("project_id").execute();
    expect(rows.map((r) => r.project_id)).toEqual(["old", "sandbox"]);
    expect(rows.every((r) => !("environment" in r))).toBe(true);
  });
});
