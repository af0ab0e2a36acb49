/**
 * The database wrapper: opens the configured store, runs migrations, and runs
 * write transactions the way each dialect needs. Everything SQLite-specific
 * stays in this file and everything PostgreSQL-specific in postgres.ts, so the
 * queries elsewhere run on both.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect, sql } from "kysely";
import { type CommitListener, announce, trackChanges, untrack } from "./commit-hooks.js";
import { type ExactStatement, exactStatement } from "./exact-integers.js";
import { migrationProvider } from "./migrations/index.js";
import { BACKSTOP_PAGES, type Checkpointer, startCheckpointer } from "./checkpointer.js";
import { WalSync } from "./wal-sync.js";
import { ensureSchema, openPostgres } from "./postgres.js";
import type { DatabaseSchema } from "./schema.js";
import type { Logger } from "../logger.js";

/** A Kysely handle: the database, or one transaction of it. */
export type Db = Kysely<DatabaseSchema>;

export interface TransactionOptions {
  /**
   * The one project (or other partition) whose data `fn` checks and then
   * writes. On PostgreSQL transactions of different scopes run in parallel
   * and those of one scope one at a time; unscoped ones run alone. SQLite
   * ignores it (it has one writer anyway).
   */
  scope?: string;
}

export interface Database {
  readonly dialect: "sqlite" | "postgres";
  readonly db: Db;
  /**
   * Runs `fn` in one write transaction and commits before returning. On
   * SQLite it is `BEGIN IMMEDIATE`, so the write lock is taken up front and a
   * check-then-write inside `fn` cannot race another writer (another process
   * included); on PostgreSQL an advisory lock taken first gives the same
   * guarantee across instances (see postgres.ts). Use only the handle passed
   * to `fn` inside it.
   */
  transaction<T>(fn: (tx: Db) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * As `transaction`, but resolves as soon as COMMIT has returned (and its
   * commit listeners ran), with `durable`: settled once the commit is on disk.
   * Whoever acknowledges the transaction's writes waits for `durable`; the
   * group commit meanwhile starts its next batch (SQLite at full durability
   * syncs the WAL off the main thread, wal-sync.ts). Where a COMMIT is
   * durable when it returns, `durable` is already resolved.
   */
  transactionPipelined<T>(fn: (tx: Db) => Promise<T>, options?: TransactionOptions): Promise<{ value: T; durable: Promise<void> }>;
  close(): Promise<void>;
  /**
   * Registers a listener for what each committed transaction touched
   * (commit-hooks.ts); awaited after COMMIT, before `transaction` returns.
   */
  onCommit(listener: CommitListener): void;
  /**
   * SQLite only: `PRAGMA data_version`, which changes when another
   * connection (another process on the same file) commits. Synchronous and
   * cheap (one prepared statement), for caches to check before serving.
   */
  dataVersion?(): number;
  /**
   * SQLite at full durability: WAL syncs completed so far (wal-sync.ts); undefined where COMMIT itself is
   * durable (PostgreSQL) or nothing is synced (`normal`, in memory). For tests and the bench.
   */
  walSyncs?(): number;
  /** SQLite on a file: background WAL checkpoints run so far (checkpointer.ts; for tests). */
  checkpoints?(): number;
  /** Connection pool figures for /metrics (PostgreSQL; SQLite has one connection and no pool). */
  poolStats?(): { total: number; idle: number; waiting: number };
}

/** True for a `postgres://` or `postgresql://` DATABASE_URL. */
export const isPostgresUrl = (url: string) => /^postgres(ql)?:\/\//.test(url);

/** DATABASE_URL fit for a log line: a password in it is masked. */
export function redactDatabaseUrl(url: string): string {
  if (!isPostgresUrl(url)) return url;
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

/**
 * Kysely's SQLite driver prepares every query anew; preparing cost ~8% of a
 * VerifyApiKey call in a CPU profile. Queries are built from a fixed set of
 * shapes, so a bounded cache of prepared statements by SQL text removes it.
 * Each statement binds and reads integers exactly (exact-integers.ts).
 */
function withStatementCache(sqlite: SqliteDatabase.Database, autocommitted: () => void) {
  const cache = new Map<string, ExactStatement>();
  return {
    prepare(sql: string) {
      // Kysely's driver asks for a statement once per query it runs: this counts statements executed.
      sqliteStatements++;
      let stmt = cache.get(sql);
      if (!stmt) {
        stmt = exactStatement(sqlite.prepare(sql));
        if (!stmt.reader && !TRANSACTION_END.test(sql)) {
          // A write outside any transaction committed on its own: tell the durability check (see openDatabase).
          const run = stmt.run;
          stmt = { ...stmt, run: (params) => {
            const result = run(params);
            if (!sqlite.inTransaction) autocommitted();
            return result;
          } };
        }
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

// Ends of transactions run by `transaction` itself, which syncs after them.
const TRANSACTION_END = /^\s*(COMMIT|END|ROLLBACK)\b/i;

let sqliteStatements = 0;

/** SQL statements run through Kysely on SQLite in this process so far (bench/record-cost.ts: statements per record). */
export const sqliteStatementsRun = () => sqliteStatements;

/** Resolves DATABASE_URL to a SQLite filename. */
export function sqliteFilename(url: string): string {
  if (url === ":memory:") return url;
  if (url.startsWith("file:")) return decodeURIComponent(new URL(url).pathname);
  return url;
}

/** Opens the store named by `url`, creating the file and running migrations. */
export interface OpenOptions {
  /** PostgreSQL connections. */
  poolSize?: number;
  /**
   * SQLite durability. `full` (default): a transaction is acknowledged only
   * after the WAL is fsynced (on the thread pool, wal-sync.ts; the effect of
   * `synchronous=FULL` without blocking the event loop), so an acknowledged
   * write survives power loss or an OS crash.
   * `normal`: it survives a process crash, but the last transactions before
   * a power cut can be lost (acknowledged usage then never billed, and
   * charged again on retry). Group commit pays the fsync once per batch.
   */
  synchronous?: "full" | "normal";
  /** Told how long each WAL sync took, ms (SQLite at full durability). */
  observeSync?: (ms: number) => void;
  /** Where the background checkpointer reports its failures (SQLite on a file); silent without. */
  log?: Logger;
}

export async function openDatabase(url: string, opts: OpenOptions = {}): Promise<Database> {
  if (isPostgresUrl(url)) {
    const { database, schema } = openPostgres(url, opts);
    try {
      if (schema !== "public") await ensureSchema(database.db, schema);
      await migrate(database.db, schema);
    } catch (err) {
      await database.close();
      throw err;
    }
    return database;
  }
  const filename = sqliteFilename(url);
  let sqlite: SqliteDatabase.Database;
  try {
    if (filename !== ":memory:") mkdirSync(dirname(filename), { recursive: true });
    sqlite = new SqliteDatabase(filename);
    sqlite.pragma("journal_mode = WAL");
  } catch (err) {
    // better-sqlite3 says only "unable to open database file": name the file, so the operator knows which.
    throw new Error(`cannot open the SQLite database ${filename}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // NORMAL always: full durability (acknowledged = on disk through power loss, OpenOptions.synchronous) is
  // the WAL synced off the main thread by WalSync before any acknowledgement. In memory: nothing to sync.
  const offThreadSync = opts.synchronous !== "normal" && filename !== ":memory:";
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  let walSync: WalSync | undefined;
  const db: Db = new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite, () => walSync?.durableNow()) }) });
  await migrateExclusively(sqlite, db);
  if (offThreadSync) {
    try {
      walSync = WalSync.open(filename);
      walSync.observe = opts.observeSync;
      walSync.durableNow(); // the migrations just committed
    } catch (err) {
      sqlite.close();
      throw new Error(`cannot sync the SQLite database ${filename}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  // Checkpoints in a worker thread; the main connection's own only as a backstop (checkpointer.ts).
  let checkpointer: Checkpointer | undefined;
  if (filename !== ":memory:") {
    sqlite.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
    checkpointer = startCheckpointer(filename, { log: opts.log });
  }
  const listeners: CommitListener[] = [];
  const dataVersion = sqlite.prepare("PRAGMA data_version").pluck();
  const durable = () => (walSync ? walSync.durable() : Promise.resolve());
  const transactionPipelined = async <T>(fn: (tx: Db) => Promise<T>) => {
      let changes!: ReturnType<typeof trackChanges>;
      // One connection, held for the whole transaction (Kysely's SQLite driver serializes on it).
      const result = await db.connection().execute(async (conn) => {
        changes = trackChanges(conn);
        await sql`BEGIN IMMEDIATE`.execute(conn);
        try {
          const result = await fn(conn);
          await sql`COMMIT`.execute(conn);
          return result;
        } catch (err) {
          await sql`ROLLBACK`.execute(conn);
          throw err;
        } finally {
          untrack(conn);
        }
      });
      // Started before the listeners run, so the sync overlaps them.
      const synced = durable();
      synced.catch(() => {}); // awaited by the caller; not an unhandled rejection meanwhile
      await announce(listeners, changes);
      return { value: result, durable: synced };
  };
  return {
    dialect: "sqlite",
    db,
    transactionPipelined,
    transaction: async (fn) => {
      const { value, durable } = await transactionPipelined(fn);
      await durable;
      return value;
    },
    close: async () => {
      await checkpointer?.stop();
      await db.destroy();
      await walSync?.close();
    },
    onCommit: (l) => void listeners.push(l),
    dataVersion: () => dataVersion.get() as number,
    walSyncs: walSync ? () => walSync!.completed() : undefined,
    checkpoints: checkpointer ? () => checkpointer!.runs() : undefined,
  };
}

/**
 * Another process migrating the same store at the same moment (instances
 * started together): SQLite has no migration lock in Kysely, so the loser
 * sees the winner's tables or a busy database; its transaction rolled back.
 */
// The last three: Kysely's migrator finds its tables through the catalog of every schema in the database,
// which fails when another schema (another deployment's, a test's) is dropped while it reads.
const MIGRATION_RACE = /already exists|duplicate column|no such (table|column|index)|SQLITE_BUSY|database is locked|duplicate key|could not serialize|schema "[^"]*" does not exist|relation "[^"]*" does not exist|cache lookup failed/i;
const MIGRATION_ATTEMPTS = 30;

/**
 * SQLite migrations inside one `BEGIN IMMEDIATE` transaction on the one
 * connection Kysely uses: Kysely runs SQLite migrations without a transaction
 * or a lock, so processes started together on one file would interleave
 * (half-applied migrations). The write lock makes them take turns; the later
 * ones find nothing to do. Waiting past busy_timeout is retried.
 */
async function migrateExclusively(sqlite: SqliteDatabase.Database, db: Db): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      sqlite.exec("BEGIN IMMEDIATE");
    } catch (err) {
      if (attempt < MIGRATION_ATTEMPTS && /busy|locked/i.test(String(err))) continue;
      throw err;
    }
    try {
      await migrate(db);
      sqlite.exec("COMMIT");
      return;
    } catch (err) {
      if (sqlite.inTransaction) sqlite.exec("ROLLBACK");
      throw err;
    }
  }
}

/** Runs every pending migration; throws with the failing migration's name. */
export async function migrate(db: Db, schema?: string): Promise<void> {
  // On PostgreSQL the migration tables must be looked for in our schema, not in any schema of the database.
  const migrator = new Migrator({ db, provider: migrationProvider, migrationTableSchema: schema });
  for (let attempt = 1; ; attempt++) {
    const { error, results } = await migrator.migrateToLatest();
    if (!error) return;
    const message = error instanceof Error ? error.message : String(error);
    // Lost a race with another instance: wait a little and look again (the winner's work is then visible).
    if (attempt < MIGRATION_ATTEMPTS && MIGRATION_RACE.test(message)) {
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
      continue;
    }
    const failed = results?.find((r) => r.status === "Error")?.migrationName ?? "unknown";
    throw new Error(`migration ${failed} failed: ${message}`);
  }
}
