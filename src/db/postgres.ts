/**
 * The PostgreSQL store (`DATABASE_URL=postgres://…`): Kysely's PostgresDialect
 * over a `pg` pool, shared by several Formstate instances.
 *
 * Write transactions keep the guarantee the SQLite store gives with
 * `BEGIN IMMEDIATE` (no other writer between a check and the write that
 * depends on it), across processes, with transaction-scoped advisory locks
 * taken first thing in a READ COMMITTED transaction (so every read after the
 * lock sees what the previous holder committed):
 * - an unscoped transaction takes the store's write lock exclusively: writers
 *   run one at a time, exactly like SQLite;
 * - a transaction scoped to a project (`{ scope }`) takes the write lock
 *   shared plus the scope's own lock exclusively: writers of different
 *   projects run in parallel, writers of one project one at a time. A scoped
 *   transaction may check-then-write only data of its scope.
 */
import pg from "pg";
import { Kysely, PostgresDialect, sql } from "kysely";
import type { DatabaseSchema } from "./schema.js";
import type { Database, Db, TransactionOptions } from "./database.js";
import { type CommitListener, announce, trackChanges, untrack } from "./commit-hooks.js";

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/**
 * Integers come back as on SQLite (exact-integers.ts): int8 (bigint columns,
 * count) and numeric (sum of bigint) as JS numbers when a double holds them
 * exactly, as bigints past 2^53 (a balance may pass it), never rounded.
 */
function exactNumber(text: string): number | bigint {
  const n = Number(text);
  if (/^-?\d+$/.test(text) && !Number.isSafeInteger(n)) return BigInt(text);
  return n;
}

const typeParsers = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8_OID || oid === NUMERIC_OID) return exactNumber;
    return (pg.types.getTypeParser as (oid: number, format?: string) => unknown)(oid, format);
  },
};

/** FNV-1a, 32 bits, as a signed int4: advisory lock keys computed here, sent as literals. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, "utf8")) h = Math.imul(h ^ byte, 0x01000193);
  return h | 0;
}

/** A signed int8 literal from two 32-bit hashes of `text`. */
function lockKey64(text: string): string {
  return ((BigInt(hash32(text)) << 32n) | BigInt(hash32(`${text}#`) >>> 0)).toString();
}

/** Runs work one at a time per key, in arrival order (a failure does not stop the queue). */
class ScopeQueue {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export interface PostgresTarget {
  /** The connection string without Formstate's own parameters. */
  connectionString: string;
  /** The schema to live in (`?schema=` in DATABASE_URL), created if missing; default `public`. */
  schema: string;
}

/** Splits Formstate's `schema` parameter off a postgres:// URL. */
export function postgresTarget(url: string): PostgresTarget & { options: string } {
  const u = new URL(url);
  // libpq's `options` (e.g. `-c synchronous_commit=off`) are kept; the schema's search_path is added to them.
  const options = u.searchParams.get("options") ?? "";
  u.searchParams.delete("options");
  const schema = u.searchParams.get("schema") ?? "public";
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error("DATABASE_URL schema must match [a-z_][a-z0-9_]{0,62}");
  u.searchParams.delete("schema");
  return { connectionString: u.toString(), schema, options };
}

export interface PostgresOptions {
  poolSize?: number;
}

/** Opens the pool (nothing is connected until the first query). */
export function openPostgres(url: string, opts: PostgresOptions = {}): { database: Database; schema: string } {
  const { connectionString, schema, options } = postgresTarget(url);
  const pool = new pg.Pool({
    connectionString,
    max: opts.poolSize ?? 10,
    types: typeParsers as pg.CustomTypesConfig,
    // Every connection lives in the schema: the same unqualified queries as on SQLite.
    options: `${options} -c search_path=${schema}`.trim(),
    // Waiting for a pooled connection is waiting for a writer ahead (like SQLite's one connection): generous, still bounded.
    connectionTimeoutMillis: 30_000,
  });
  // An idle client losing its server is reported here; the pool replaces it. Without a listener it would crash the process.
  pool.on("error", () => {});
  const db: Db = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) });
  const ns = `formstate:${schema}`;
  const global = lockKey64(ns);
  const nsKey = hash32(ns);
  // BEGIN and the lock in one round trip (a parameterless simple query may hold several statements).
  const begin = (scope: string | undefined) =>
    scope === undefined
      ? `BEGIN; SELECT pg_advisory_xact_lock(${global})`
      : // The one-bigint and the two-int4 advisory key spaces do not overlap.
        `BEGIN; SELECT pg_advisory_xact_lock_shared(${global}), pg_advisory_xact_lock(${nsKey}, ${hash32(scope)})`;
  const queue = new ScopeQueue();
  const listeners: CommitListener[] = [];
  const database: Database = {
    dialect: "postgres",
    db,
    // In this process, writers of one scope queue in memory first: only the one at the head holds a pooled
    // connection while it waits for the advisory lock, so a busy project cannot take every connection.
    transaction: async <T>(fn: (tx: Db) => Promise<T>, options?: TransactionOptions) => {
      let changes!: ReturnType<typeof trackChanges>;
      const result = await queue.run(options?.scope ?? "", () => db.connection().execute(async (conn) => {
        changes = trackChanges(conn);
        await sql.raw(begin(options?.scope)).execute(conn);
        try {
          const result = await fn(conn);
          await sql`COMMIT`.execute(conn);
          return result;
        } catch (err) {
          // A broken connection cannot roll back either; the server does when it notices. The first error is the one to report.
          await sql`ROLLBACK`.execute(conn).catch(() => {});
          throw err;
        } finally {
          untrack(conn);
        }
      }));
      // After the connection and the scope's turn are given back: announcing to other instances waits on Redis.
      await announce(listeners, changes);
      return result;
    },
    // A PostgreSQL COMMIT returns once its WAL is flushed (synchronous_commit as configured).
    transactionPipelined: async <T>(fn: (tx: Db) => Promise<T>, options?: TransactionOptions) => ({ value: await database.transaction(fn, options), durable: Promise.resolve() }),
    onCommit: (l) => void listeners.push(l),
    close: () => db.destroy(),
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
  };
  return { database, schema };
}

/** Creates the schema if it is missing (before migrations run in it). */
export async function ensureSchema(db: Db, schema: string): Promise<void> {
  try {
    await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(db);
  } catch (err) {
    // Instances starting together race on IF NOT EXISTS: the loser sees a duplicate, which is fine.
    if ((err as { code?: string }).code !== "23505") throw err;
  }
}
