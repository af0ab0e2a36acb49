/**
 * Queries compiled once. Kysely builds a query's tree and compiles its SQL on
 * every call; on SQLite that was about half the CPU of a simple indexed
 * statement (bench/RESULTS.md, "set-based group commit"). A prepared query is
 * built and compiled once per dialect with placeholder values in place of its
 * arguments; each call then only binds its values, and the SQLite driver finds
 * the better-sqlite3 statement in its cache by SQL text (database.ts). The
 * same query runs on PostgreSQL (compiled there by its own dialect).
 *
 * Arguments must be plain values bound as parameters (compared, inserted, set,
 * added): not spread into IN lists or chosen between in the builder. A
 * placeholder that does not come back as a parameter is refused when the
 * query is first compiled.
 */
import { type Compilable, CompiledQuery } from "kysely";
import type { Db } from "./database.js";
import type { DatabaseSchema as DbTables } from "./schema.js";

const SLOT = Symbol("prepared argument");
type Slot = { [SLOT]: number };
type Compiled = { sql: string; params: Array<number | { value: unknown }> };

/** `build` compiled once per dialect; the returned function runs it with `args` bound and returns its rows. */
export function prepared<A extends unknown[], R>(build: (db: Db, ...args: A) => Compilable<R>): (db: Db, ...args: A) => Promise<R[]> {
  const byDialect = new Map<unknown, Compiled>();
  return async (db, ...args) => {
    const dialect = db.getExecutor().adapter.constructor;
    let c = byDialect.get(dialect);
    if (!c) {
      const slots = args.map((_, i): Slot => ({ [SLOT]: i }));
      const compiled = build(db, ...(slots as unknown as A)).compile();
      const params = compiled.parameters.map((p) => (p !== null && typeof p === "object" && SLOT in p ? (p as Slot)[SLOT] : { value: p }));
      for (let i = 0; i < args.length; i++) {
        if (!params.includes(i)) throw new Error(`prepared query: argument ${i} is not bound as a parameter in ${compiled.sql}`);
      }
      byDialect.set(dialect, (c = { sql: compiled.sql, params }));
    }
    const values = c.params.map((p) => (typeof p === "number" ? args[p] : p.value));
    return (await db.executeQuery<R>(CompiledQuery.raw(c.sql, values))).rows;
  };
}

/**
 * A multi-row INSERT of `table` compiled once per dialect and row count:
 * `insert(db, rows)` writes rows that all have the columns of the first one
 * (the set writers' rows are built by one function each). Optional
 * `onConflict` applies to each compiled statement (its values must not depend
 * on the rows).
 */
export function preparedInsert<T extends keyof DbTables>(
  table: T,
  onConflict?: (q: ReturnType<Db["insertInto"]>) => Compilable<unknown>,
): (db: Db, rows: Array<Record<string, unknown>>) => Promise<void> {
  const byDialect = new Map<unknown, Map<string, Compiled>>();
  return async (db, rows) => {
    if (rows.length === 0) return;
    const columns = Object.keys(rows[0]);
    const dialect = db.getExecutor().adapter.constructor;
    let byShape = byDialect.get(dialect);
    if (!byShape) byDialect.set(dialect, (byShape = new Map()));
    const cacheKey = `${rows.length}:${columns.join()}`;
    let c = byShape.get(cacheKey);
    if (!c) {
      let n = 0;
      const slotRows = rows.map(() => Object.fromEntries(columns.map((col) => [col, { [SLOT]: n++ } as Slot])));
      const q = db.insertInto(table).values(slotRows as never);
      const compiled = (onConflict ? onConflict(q as never) : q).compile();
      const params = compiled.parameters.map((p) => (p !== null && typeof p === "object" && SLOT in p ? (p as Slot)[SLOT] : { value: p }));
      if (params.filter((p) => typeof p === "number").length !== n) throw new Error(`prepared insert into ${table}: not every value is a parameter`);
      byShape.set(cacheKey, (c = { sql: compiled.sql, params }));
    }
    const flat: unknown[] = [];
    for (const r of rows) for (const col of columns) flat.push(r[col]);
    const values = c.params.map((p) => (typeof p === "number" ? flat[p] : p.value));
    await db.executeQuery(CompiledQuery.raw(c.sql, values));
  };
}
