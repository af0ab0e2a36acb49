/**
 * Prepared queries (src/db/prepared.ts): compiled once, each call binds its
 * own arguments and reads what the same query built by Kysely reads, for
 * selects, updates and multi-row inserts (with an upsert), exact past 2^53;
 * an argument the builder does not bind as a parameter is refused. On the
 * configured store: a temporary SQLite file, or a fresh schema on PostgreSQL
 * when DATABASE_URL names one (npm run test:pg).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase, sqliteStatementsRun } from "../../src/db/database.js";
import { prepared, preparedInsert } from "../../src/db/prepared.js";
import { dropPostgresSchema, postgresTestEnv } from "../support/postgres.js";

let dir: string;
let database: Database;
let schema: string | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "formstate-prepared-"));
  const shared = postgresTestEnv(dir);
  schema = shared.schema;
  database = await openDatabase(shared.env.DATABASE_URL ?? join(dir, "p.db"));
  const account = (id: string, credits: number) => ({ project_id: id, display_name: id, billing_email: "", plan_tier: "free", subscription_status: "none", credit_balance_micros: credits, created_by: "test", create_request_id: null, create_time: 1, update_time: 1 });
  await database.db.insertInto("account").values([account("p1", 10), account("p2", 20)] as never).execute();
});
afterAll(async () => {
  await database?.close();
  if (schema) await dropPostgresSchema(schema);
  rmSync(dir, { recursive: true, force: true });
});

const balanceOf = prepared((db, projectId: string) => db.selectFrom("account").select(["project_id", "credit_balance_micros"]).where("project_id", "=", projectId));
const move = prepared((db, projectId: string, amount: number | bigint, now: number) =>
  db.updateTable("account").set((eb) => ({ credit_balance_micros: eb("credit_balance_micros", "+", amount), update_time: now })).where("project_id", "=", projectId),
);
const insertRollups = preparedInsert("usage_rollup", (q) =>
  (q as unknown as ReturnType<typeof database.db.insertInto<"usage_rollup">>).onConflict((oc) =>
    oc.columns(["project_id", "environment", "hour", "subject_kind", "subject"]).doUpdateSet((eb) => ({ requests: eb("usage_rollup.requests", "+", eb.ref("excluded.requests")) })),
  ),
);

describe("prepared queries", () => {
  it("bind each call's arguments and read what the query built by Kysely reads", async () => {
    const db = database.db;
    for (const id of ["p1", "p2", "p1", "nobody"]) {
      const built = await db.selectFrom("account").select(["project_id", "credit_balance_micros"]).where("project_id", "=", id).execute();
      expect(await balanceOf(db, id)).toEqual(built);
    }
    await database.transaction(async (tx) => {
      await move(tx, "p1", 5, 2);
      await move(tx, "p2", -7, 3);
    });
    expect((await balanceOf(db, "p1"))[0].credit_balance_micros).toBe(15);
    expect((await balanceOf(db, "p2"))[0].credit_balance_micros).toBe(13);
    // Exact past 2^53 (a bigint argument, a bigint read back).
    await database.transaction((tx) => move(tx, "p1", 2n ** 60n, 4));
    expect(BigInt((await balanceOf(db, "p1"))[0].credit_balance_micros)).toBe(2n ** 60n + 15n);
    await database.transaction((tx) => move(tx, "p1", -(2n ** 60n), 5));
  });

  it("multi-row inserts: one statement per call whatever the row count, the same rows as Kysely's insert", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ hour: fc.integer({ min: 0, max: 5 }), subject: fc.constantFrom("a", "b"), requests: fc.integer({ min: 1, max: 9 }) }), { minLength: 1, maxLength: 12 }), async (lines) => {
        // Rows of one statement must be distinct keys (PostgreSQL refuses to upsert a row twice in one statement).
        const distinct = [...new Map(lines.map((l) => [`${l.hour}:${l.subject}`, l])).values()];
        const rows = distinct.map((l) => ({ project_id: "p2", environment: "live", hour: l.hour, subject_kind: "model", subject: l.subject, input_tokens: 0, output_tokens: 0, requests: l.requests, cost_micros: 0, token_cost_micros: 0 }));
        const before = await database.db.selectFrom("usage_rollup").selectAll().where("project_id", "=", "p2").execute();
        const statements = sqliteStatementsRun();
        await database.transaction((tx) => insertRollups(tx, rows));
        if (database.dialect === "sqlite") expect(sqliteStatementsRun() - statements).toBe(3); // BEGIN, the insert, COMMIT
        const after = await database.db.selectFrom("usage_rollup").selectAll().where("project_id", "=", "p2").execute();
        const count = (rs: typeof after, l: { hour: number; subject: string }) => Number(rs.find((r) => Number(r.hour) === l.hour && r.subject === l.subject)?.requests ?? 0);
        for (const l of distinct) expect(count(after, l)).toBe(count(before, l) + l.requests);
        expect(after.length).toBe(new Set([...before, ...rows].map((r) => `${Number(r.hour)}:${r.subject}`)).size);
      }),
      { numRuns: 25 },
    );
  });

  it("refuses an argument that is not bound as a parameter (one the builder chooses by)", async () => {
    const chosen = prepared((db, live: boolean) => db.selectFrom("account").select(live ? "credit_balance_micros" : "test_credit_balance_micros"));
    await expect(chosen(database.db, false)).rejects.toThrow(/argument 0 is not bound as a parameter/);
  });
});
