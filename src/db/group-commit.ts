/**
 * Group commit: concurrent write units share one SQLite transaction, and each
 * caller is answered only after the COMMIT that holds its rows. A commit costs
 * about as much for one row as for a hundred (DESIGN.md, Storage), so under
 * load this turns N commits into one. Each unit runs inside its own SAVEPOINT:
 * a unit that throws is rolled back alone and its caller gets its own error;
 * the others still commit. Units run one after another on the one connection,
 * so each sees the writes of the units before it (idempotency checks and
 * ledger balances stay exact).
 *
 * On SQLite all units share one queue (one writer, commits serialised
 * anyway). On PostgreSQL units are grouped per scope (project): the scope's
 * writers are serialised by its advisory lock across instances, so sharing a
 * transaction costs no parallelism and saves a lock handoff and a WAL flush
 * per unit; unscoped units run as plain transactions.
 */
import { sql } from "kysely";
import type { Database, Db, TransactionOptions } from "./database.js";

/** Runs write units, grouping concurrent ones into shared transactions where that helps. */
export interface GroupCommit {
  /**
   * Runs `fn` in a transaction (possibly shared) and resolves after its commit; rejects with `fn`'s error alone.
   * `options.scope` is passed on where transactions are not shared (PostgreSQL: writers of other scopes run in parallel).
   */
  run<T>(fn: (tx: Db) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * Runs `fns` in this order, each as a unit of its own (one failing fails alone), and resolves with every
   * outcome once all are committed. They join their lane's queue back to back (a batch ingest pays one commit
   * per batch of units, not one per item); unscoped on PostgreSQL, they run in one transaction of their own.
   */
  runAll<T>(fns: ((tx: Db) => Promise<T>)[], options?: TransactionOptions): Promise<Outcome<T>[]>;
  /** Transactions committed and units run so far (for tests and the bench). */
  stats(): { transactions: number; units: number };
}

interface Unit {
  fn: (tx: Db) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** A unit's outcome inside the shared transaction, delivered after COMMIT. */
export type Outcome<T = unknown> = { ok: true; value: T } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /** Most units in one transaction (bounds the latency of the first unit in a batch). */
  maxBatch?: number;
}

export function createGroupCommit(database: Database, opts: GroupCommitOptions = {}): GroupCommit {
  let transactions = 0;
  let units = 0;
  const maxBatch = opts.maxBatch ?? 256;
  // One lane per set of writers that commit one at a time anyway: on SQLite all of them (one writer), on
  // PostgreSQL each scope (a project's advisory lock serialises its writers across instances, and every
  // commit waits for its WAL flush, so a busy project paid one lock handoff and one flush per call).
  const sqlite = database.dialect === "sqlite";
  const lanes = new Map<string, Unit[]>();

  async function flush(key: string, options: TransactionOptions | undefined): Promise<void> {
    for (let queue = lanes.get(key); queue && queue.length > 0; queue = lanes.get(key)) {
      const batch = queue.splice(0, maxBatch);
      let outcomes: Outcome[];
      try {
        outcomes = await database.transaction(async (tx) => {
          const out: Outcome[] = [];
          for (const unit of batch) out.push(await runUnit(tx, unit));
          return out;
        }, options);
      } catch (err) {
        // The shared transaction itself failed (COMMIT, or a savepoint that could not roll back): nothing in it is durable.
        for (const unit of batch) unit.reject(err);
        continue;
      }
      transactions++;
      units += batch.length;
      for (let i = 0; i < batch.length; i++) {
        const o = outcomes[i];
        if (o.ok) batch[i].resolve(o.value);
        else batch[i].reject(o.error);
      }
    }
    lanes.delete(key);
  }

  function run<T>(fn: (tx: Db) => Promise<T>, options?: TransactionOptions): Promise<T> {
    // Unscoped PostgreSQL writers take the store's write lock exclusively: nothing to share it with.
    if (!sqlite && options?.scope === undefined) return database.transaction(fn, options).finally(() => (transactions++, units++));
    const key = sqlite ? "" : options!.scope!;
    return new Promise<T>((resolve, reject) => {
      const unit = { fn, resolve: resolve as (v: unknown) => void, reject };
      const queue = lanes.get(key);
      if (queue) {
        queue.push(unit);
        return;
      }
      lanes.set(key, [unit]);
      // Wait one turn of the event loop before the first transaction so calls arriving together share it;
      // while a transaction runs, arrivals queue up for the next one by themselves.
      setImmediate(() => void flush(key, options));
    });
  }

  return {
    run,
    runAll<T>(fns: ((tx: Db) => Promise<T>)[], options?: TransactionOptions): Promise<Outcome<T>[]> {
      if (!sqlite && options?.scope === undefined) {
        return database.transaction(async (tx) => {
          const res: Outcome<T>[] = [];
          for (const fn of fns) res.push((await runUnit(tx, { fn, resolve() {}, reject() {} })) as Outcome<T>);
          return res;
        }, options).finally(() => {
          transactions++;
          units += fns.length;
        });
      }
      // Enqueued back to back in one turn: the flush keeps queue order, so they are decided in this order.
      return Promise.all(
        fns.map((fn) =>
          run(fn, options).then(
            (value): Outcome<T> => ({ ok: true, value }),
            (error: unknown): Outcome<T> => ({ ok: false, error }),
          ),
        ),
      );
    },
    stats: () => ({ transactions, units }),
  };
}

/** One unit inside its savepoint: released on success, rolled back alone on failure. */
async function runUnit(tx: Db, unit: Unit): Promise<Outcome> {
  await sql`SAVEPOINT group_unit`.execute(tx);
  try {
    const value = await unit.fn(tx);
    await sql`RELEASE group_unit`.execute(tx);
    return { ok: true, value };
  } catch (error) {
    // If this rollback throws, the connection is in an unknown state: the whole batch fails (caught in flush).
    await sql`ROLLBACK TO group_unit`.execute(tx);
    await sql`RELEASE group_unit`.execute(tx);
    return { ok: false, error };
  }
}
