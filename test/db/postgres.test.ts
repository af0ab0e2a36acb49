/**
 * The PostgreSQL store's own parts: DATABASE_URL parsing and redaction, a
 * schema per store, integers read back as exact JS numbers (or an error, never
 * a rounded amount), and writers of one scope kept apart across connections.
 */
import { sql } from "kysely";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { openDatabase, redactDatabaseUrl } from "../../src/db/database.js";
import { createGroupCommit } from "../../src/db/group-commit.js";
import { postgresTarget } from "../../src/db/postgres.js";
import { PG_URL, missingParts } from "../scale/cluster.js";
import { dropPostgresSchema } from "../support/postgres.js";

describe("DATABASE_URL", () => {
  it("takes the schema and libpq options apart, and masks a password in logs", () => {
    expect(postgresTarget("postgres://u:pw@db:5432/app?schema=tenant_a&options=-c%20statement_timeout%3D5000&sslmode=require")).toEqual({
      connectionString: "postgres://u:pw@db:5432/app?sslmode=require",
      schema: "tenant_a",
      options: "-c statement_timeout=5000",
    });
    expect(postgresTarget("postgresql://db/app").schema).toBe("public");
    expect(() => postgresTarget("postgres://db/app?schema=a;drop")).toThrow(/schema must match/);
    expect(redactDatabaseUrl("postgres://u:pw@db:5432/app")).toBe("postgres://u:***@db:5432/app");
    expect(redactDatabaseUrl("./data/formstate.db")).toBe("./data/formstate.db");
  });
});

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  it("needs PostgreSQL under CI", () => {
    throw new Error(`missing: ${missing}`);
  });
}

describe.skipIf(Boolean(missing))("on PostgreSQL", () => {
  const schema = `t_store_${Math.random().toString(36).slice(2, 10)}`;
  const url = `${PG_URL}${PG_URL.includes("?") ? "&" : "?"}schema=${schema}`;
  const opened = openDatabase(url, { poolSize: 4 });
  // A second store on the same schema: another instance, as far as locks go.
  const otherStore = opened.then(() => openDatabase(url, { poolSize: 4 }));
  afterAll(async () => {
    await (await otherStore).close();
    await (await opened).close();
    await dropPostgresSchema(schema, PG_URL);
  });

  it("migrates into its own schema and reads bigint and sums as exact numbers", async () => {
    const store = await opened;
    expect(store.dialect).toBe("postgres");
    const r = await sql<{ s: string; n: number; big: number; total: number }>`select current_schema() as s, 42::int8 as n, 9007199254740991::int8 as big, sum(x) as total from (values (1::int8), (2::int8)) v(x)`.execute(store.db);
    expect(r.rows[0]).toEqual({ s: schema, n: 42, big: Number.MAX_SAFE_INTEGER, total: 3 });
    // Past 2^53 an int8 comes back exact, as a bigint (a balance may pass it), never rounded to a double.
    const past = await sql<{ n: bigint }>`select 9007199254740993::int8 as n`.execute(store.db);
    expect(past.rows[0].n).toBe(9007199254740993n);
  });

  it("runs writers of one scope one at a time across instances, and writers of other scopes alongside", async () => {
    const stores = [await opened, await otherStore];
    const log: string[] = [];
    let turn = 0;
    // Alternate instances, so each pair below meets in PostgreSQL's locks, not in one process's queue.
    const hold = (scope: string, name: string) =>
      stores[turn++ % 2].transaction(async (tx) => {
        log.push(`${name} in`);
        await sql`select pg_sleep(0.3)`.execute(tx);
        log.push(`${name} out`);
      }, { scope });
    const t0 = Date.now();
    await Promise.all([hold("p1", "a"), hold("p1", "b"), hold("p2", "c")]);
    const elapsed = Date.now() - t0;
    // a and b never overlap; c overlaps one of them, so the three take about two sleeps, not three.
    const a = log.indexOf("a in");
    const b = log.indexOf("b in");
    const [first, second] = a < b ? ["a", "b"] : ["b", "a"];
    expect(log.indexOf(`${first} out`)).toBeLessThan(log.indexOf(`${second} in`));
    expect(elapsed).toBeLessThan(900);
    // An unscoped writer waits for every scoped one, and they for it.
    log.length = 0;
    turn = 0;
    await Promise.all([hold("p1", "d"), stores[1].transaction(async () => void log.push("global")), hold("p3", "e")]);
    const g = log.indexOf("global");
    for (const n of ["d", "e"]) expect(g < log.indexOf(`${n} in`) || g > log.indexOf(`${n} out`)).toBe(true);
  });

  it("migrates a new schema while other schemas of the database are created and dropped", async () => {
    // Kysely's migrator looks for its tables through the catalog of every schema; one dropped in between
    // (another instance's, or another test's) used to fail the start with "schema … does not exist".
    const churn = new pg.Client({ connectionString: PG_URL.replace(/\?.*$/, "") });
    await churn.connect();
    let stop = false;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        const s = `t_churn_${process.pid}_${i}`;
        await churn.query(`CREATE SCHEMA ${s}; CREATE TABLE ${s}.t (id serial primary key, a int, b text, c int8)`);
        await churn.query(`DROP SCHEMA ${s} CASCADE`);
      }
    })();
    const schemas = Array.from({ length: 4 }, (_, i) => `t_mig_${Math.random().toString(36).slice(2, 8)}_${i}`);
    try {
      for (const s of schemas) {
        const store = await openDatabase(`${PG_URL}${PG_URL.includes("?") ? "&" : "?"}schema=${s}`, { poolSize: 2 });
        await store.close();
      }
    } finally {
      stop = true;
      await loop;
      await churn.end();
      for (const s of schemas) await dropPostgresSchema(s, PG_URL);
    }
  });

  it("group commit shares a transaction among one scope's writers, fails a bad unit alone, and keeps scopes apart", async () => {
    const [a, b] = [await opened, await otherStore];
    await sql`create table if not exists gc_pg (id int8 primary key, scope text not null)`.execute(a.db);
    const gcA = createGroupCommit(a);
    const gcB = createGroupCommit(b);
    // Two instances write the same two scopes at once; unit 13 of each instance breaks a primary key of its scope.
    const unit = (gc: typeof gcA, base: number, i: number, scope: string) =>
      gc.run(async (tx) => {
        await sql`insert into gc_pg (id, scope) values (${base + i}, ${scope})`.execute(tx);
        // Unit 1 is in the same scope and lane, queued before it: its row is there by then.
        if (i === 13) await sql`insert into gc_pg (id, scope) values (${base + 1}, ${scope})`.execute(tx);
        return base + i;
      }, { scope });
    const results = await Promise.allSettled([
      ...Array.from({ length: 60 }, (_, i) => unit(gcA, 1_000, i, i % 2 ? "p1" : "p2")),
      ...Array.from({ length: 60 }, (_, i) => unit(gcB, 2_000, i, i % 2 ? "p1" : "p2")),
    ]);
    const rejected = results.flatMap((r, i) => (r.status === "rejected" ? [i] : []));
    expect(rejected).toEqual([13, 73]);
    const rows = await sql<{ n: number }>`select count(*) as n from gc_pg`.execute(a.db);
    expect(rows.rows[0].n).toBe(118);
    const gone = await sql<{ n: number }>`select count(*) as n from gc_pg where id in (1013, 2013)`.execute(a.db);
    expect(gone.rows[0].n).toBe(0);
    // 120 units arriving together in two scopes per instance: a few shared transactions, not 120.
    expect(gcA.stats().units + gcB.stats().units).toBe(120);
    expect(gcA.stats().transactions + gcB.stats().transactions).toBeLessThanOrEqual(12);
    // Unscoped units keep a transaction each (they hold the store's write lock alone).
    const before = gcA.stats().transactions;
    await Promise.all([gcA.run(async () => 1), gcA.run(async () => 2)]);
    expect(gcA.stats().transactions - before).toBe(2);
  });
});
