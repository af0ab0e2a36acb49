/**
 * The database wrapper: opens the configured store, runs migrations, and runs
 * write transactions the way each dialect needs. Everything SQLite-specific
 * stays in this file so the queries elsewhere also run on PostgreSQL.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect, sql } from "kysely";
import { migrationProvider } from "./migrations/index.js";
import type { DatabaseSchema } from "./schema.js";

/** A Kysely handle: the database, or one transaction of it. */
export type Db = Kysely<DatabaseSchema>;

export interface Database {
  readonly dialect: "sqlite";
  readonly db: Db;
  /**
   * Runs `fn` in one write transaction and commits before returning. On
   * SQLite it is `BEGIN IMMEDIATE`, so the write lock is taken up front and a
   * check-then-write inside `fn` cannot race another writer (another process
   * included). Use only the handle passed to `fn` inside it.
   */
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Kysely's SQLite driver prepares every query anew; preparing cost ~8% of a
 * VerifyApiKey call in a CPU profile. Queries are built from a fixed set of
 * shapes, so a bounded cache of prepared statements by SQL text removes it.
 */
function withStatementCache(sqlite: SqliteDatabase.Database) {
  const cache = new Map<string, SqliteDatabase.Statement>();
  return {
    prepare(sql: string) {
      let stmt = cache.get(sql);
      if (!stmt) {
        stmt = sqlite.prepare(sql);
        if (cache.size >= 1000) cache.delete(cache.keys().next().value!);
        cache.set(sql, stmt);
      }
      return stmt;
    },
    close() {
      cache.clear();
      sqlite.close();
    },
  };
}

/** Resolves DATABASE_URL to a SQLite filename. */
export function sqliteFilename(url: string): string {
  if (url === ":memory:") return url;
  if (url.startsWith("file:")) return decodeURIComponent(new URL(url).pathname);
  return url;
}

/** Opens the store named by `url`, creating the file and running migrations. */
export async function openDatabase(url: string): Promise<Database> {
  if (/^postgres(ql)?:\/\//.test(url)) {
    throw new Error("DATABASE_URL=postgres://… is not supported yet: use a SQLite path (see README)");
  }
  const filename = sqliteFilename(url);
  if (filename !== ":memory:") mkdirSync(dirname(filename), { recursive: true });
  const sqlite = new SqliteDatabase(filename);
  sqlite.pragma("journal_mode = WAL");
  // NORMAL in WAL mode: a committed transaction survives a process crash; FULL would add power loss at ~5x the cost.
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  const db: Db = new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  await migrate(db);
  return {
    dialect: "sqlite",
    db,
    transaction: (fn) =>
      // One connection, held for the whole transaction (Kysely's SQLite driver serializes on it).
      db.connection().execute(async (conn) => {
        await sql`BEGIN IMMEDIATE`.execute(conn);
        try {
          const result = await fn(conn);
          await sql`COMMIT`.execute(conn);
          return result;
        } catch (err) {
          await sql`ROLLBACK`.execute(conn);
          throw err;
        }
      }),
    close: () => db.destroy(),
  };
}

/** Runs every pending migration; throws with the failing migration's name. */
export async function migrate(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`migration ${failed} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
