/**
 * Exact integers on SQLite, as on PostgreSQL (postgres.ts): money is int64
 * micro-USD and a balance may pass 2^53, where a JS number stops being exact.
 * better-sqlite3 binds every JS number as a REAL (so `balance + ?` is float
 * arithmetic) and reads INTEGERs back as numbers (rounding past 2^53). A
 * prepared statement wrapped here binds integral numbers as INTEGERs and reads
 * with safeIntegers: an integer comes back as a JS number when a double holds
 * it exactly, as a bigint otherwise. Money types say so (`Micros`).
 */
import type SqliteDatabase from "better-sqlite3";

type Row = Record<string, unknown>;

/** A value read back: a safe integer as a number, a larger one as the exact bigint. */
export function exactInteger(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function exactRow(row: unknown): unknown {
  if (row === null || typeof row !== "object") return row;
  const r = row as Row;
  for (const k in r) {
    const v = r[k];
    if (typeof v === "bigint") r[k] = exactInteger(v);
  }
  return r;
}

/** Integral numbers bind as SQLite INTEGERs (sums and increments stay integer arithmetic). */
function bindable(params: readonly unknown[]): unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < params.length; i++) {
    const v = params[i];
    if (typeof v === "number" && Number.isInteger(v)) {
      out ??= params.slice();
      out[i] = BigInt(v);
    }
  }
  return out ?? (params as unknown[]);
}

/** The part of a better-sqlite3 statement Kysely's SQLite driver uses. */
export interface ExactStatement {
  readonly reader: boolean;
  all(params: readonly unknown[]): unknown[];
  run(params: readonly unknown[]): SqliteDatabase.RunResult;
  iterate(params: readonly unknown[]): IterableIterator<unknown>;
}

/** Wraps a prepared statement: integers bound and read back exactly (see the file comment). */
export function exactStatement(stmt: SqliteDatabase.Statement): ExactStatement {
  if (stmt.reader) stmt.safeIntegers(true);
  return {
    reader: stmt.reader,
    all: (params) => stmt.all(bindable(params)).map(exactRow),
    run: (params) => stmt.run(bindable(params)),
    *iterate(params) {
      for (const row of stmt.iterate(bindable(params))) yield exactRow(row);
    },
  };
}
