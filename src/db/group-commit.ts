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
 * A batch's callers are answered once its commit is durable
 * (`Database.transactionPipelined`); the next batch does not wait for that.
 *
 * On SQLite all units share one queue (one writer, commits serialised
 * anyway). On PostgreSQL units are grouped per scope (project): the scope's
 * writers are serialised by its advisory lock across instances, so sharing a
 * transaction costs no parallelism and saves a lock handoff and a WAL flush
 * per unit; unscoped units run as plain transactions.
 *
 * Set-based units: a unit made by `setUnit` also carries an item for a
 * `SetWriter`. Consecutive units of one writer in a batch (a "run") are given
 * to the writer together: it decides them in memory in arrival order, each as
 * if it ran alone after the ones before it, and writes the accepted ones with
 * a few multi-row statements (src/usage/record-set.ts). The run has its own
 * savepoint; if the writer throws, the run is rolled back and each unit runs
 * its own per-unit function instead, so a set path can hand any case it does
 * not model back to the exact per-unit path.
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
  /** Transactions committed, units run, units decided by a set writer, and runs it handed back (for tests and the bench). */
  stats(): { transactions: number; units: number; setUnits: number; setFallbacks: number };
}

/**
 * Decides and writes a run of items in one go (see the file comment). One outcome per item, in order; a
 * refused item's outcome carries its error and writes nothing. Throwing hands the whole run back to the
 * per-unit functions.
 */
export interface SetWriter<I, T> {
  apply(tx: Db, items: I[]): Promise<Outcome<T>[]>;
}

/** A write unit; with `set`, it may be decided and written together with its neighbours by `set.writer`. */
export type UnitFn<T> = ((tx: Db) => Promise<T>) & { set?: { writer: SetWriter<unknown, T>; item: unknown } };

/** A unit `fn` that a group commit may instead hand to `writer` with `item` (fn stays its exact per-unit path). */
export function setUnit<I, T>(fn: (tx: Db) => Promise<T>, writer: SetWriter<I, T>, item: I): UnitFn<T> {
  return Object.assign(fn, { set: { writer: writer as SetWriter<unknown, T>, item } });
}

interface Unit {
  fn: UnitFn<unknown>;
  /** When it was queued (performance.now()), for `observe`. */
  queued: number;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** A unit's outcome inside the shared transaction, delivered after COMMIT. */
export type Outcome<T = unknown> = { ok: true; value: T } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /** Most units in one transaction (bounds the latency of the first unit in a batch). */
  maxBatch?: number;
  /** Told why a set writer handed its run back to the per-unit path (its error). */
  onSetFallback?(err: unknown): void;
  /**
   * Told where time goes, ms: `queue` per unit (queued until its batch's transaction began), `transaction` per
   * batch (BEGIN to COMMIT, deciding and writing included), `durable` per batch (COMMIT to on disk).
   */
  observe?(stage: "queue" | "transaction" | "durable", ms: number): void;
}

export function createGroupCommit(database: Database, opts: GroupCommitOptions = {}): GroupCommit {
  let transactions = 0;
  let units = 0;
  let setUnits = 0;
  let setFallbacks = 0;
  const maxBatch = opts.maxBatch ?? 256;
  const observe = opts.observe;
  // One lane per set of writers that commit one at a time anyway: on SQLite all of them (one writer), on
  // PostgreSQL each scope (a project's advisory lock serialises its writers across instances, and every
  // commit waits for its WAL flush, so a busy project paid one lock handoff and one flush per call).
  const sqlite = database.dialect === "sqlite";
  const lanes = new Map<string, Unit[]>();

  async function flush(key: string, options: TransactionOptions | undefined): Promise<void> {
    for (let queue = lanes.get(key); queue && queue.length > 0; queue = lanes.get(key)) {
      const batch = queue.splice(0, maxBatch);
      let outcomes: Outcome[];
      let durable: Promise<void>;
      const began = performance.now();
      if (observe) for (const unit of batch) observe("queue", began - unit.queued);
      try {
        ({ value: outcomes, durable } = await database.transactionPipelined(async (tx) => {
          const out: Outcome[] = [];
          for (let i = 0; i < batch.length; ) {
            const writer = batch[i].fn.set?.writer;
            if (!writer) {
              out.push(await runUnit(tx, batch[i++]));
              continue;
            }
            let j = i + 1;
            while (j < batch.length && batch[j].fn.set?.writer === writer) j++;
            const r = await runSet(tx, writer, batch.slice(i, j), opts.onSetFallback);
            if (r.fellBack) setFallbacks++;
            else setUnits += j - i;
            for (const o of r.outcomes) out.push(o);
            i = j;
          }
          return out;
        }, options));
      } catch (err) {
        // The shared transaction itself failed (COMMIT, or a savepoint that could not roll back): nothing in it is durable.
        for (const unit of batch) unit.reject(err);
        continue;
      }
      transactions++;
      units += batch.length;
      const committed = performance.now();
      if (observe) {
        observe("transaction", committed - began);
        void durable.then(() => observe("durable", performance.now() - committed), () => {});
      }
      // Answered once the commit is on disk; meanwhile the next batch is decided and committed (it sees this
      // batch's rows, and its own answers wait for a later sync, which covers both).
      const settle = (o: Outcome, unit: Unit) => (o.ok ? unit.resolve(o.value) : unit.reject(o.error));
      void durable.then(
        () => batch.forEach((unit, i) => settle(outcomes[i], unit)),
        (err: unknown) => batch.forEach((unit) => unit.reject(err)),
      );
    }
    lanes.delete(key);
  }

  function run<T>(fn: (tx: Db) => Promise<T>, options?: TransactionOptions): Promise<T> {
    // Unscoped PostgreSQL writers take the store's write lock exclusively: nothing to share it with.
    if (!sqlite && options?.scope === undefined) return database.transaction(fn, options).finally(() => (transactions++, units++));
    const key = sqlite ? "" : options!.scope!;
    return new Promise<T>((resolve, reject) => {
      const unit = { fn, queued: observe ? performance.now() : 0, resolve: resolve as (v: unknown) => void, reject };
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
          for (const fn of fns) res.push((await runUnit(tx, { fn, queued: 0, resolve() {}, reject() {} })) as Outcome<T>);
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
    stats: () => ({ transactions, units, setUnits, setFallbacks }),
  };
}

/** A run of set units inside one savepoint; if the writer throws, the run is rolled back and each unit runs alone. */
async function runSet(tx: Db, writer: SetWriter<unknown, unknown>, run: Unit[], onFallback?: (err: unknown) => void): Promise<{ outcomes: Outcome[]; fellBack: boolean }> {
  await sql`SAVEPOINT group_set`.execute(tx);
  try {
    const outcomes = await writer.apply(tx, run.map((u) => u.fn.set!.item));
    if (outcomes.length !== run.length) throw new Error(`set writer answered ${outcomes.length} of ${run.length} items`);
    await sql`RELEASE group_set`.execute(tx);
    return { outcomes, fellBack: false };
  } catch (err) {
    onFallback?.(err);
    // If this rollback throws, the connection is in an unknown state: the whole batch fails (caught in flush).
    await sql`ROLLBACK TO group_set`.execute(tx);
    await sql`RELEASE group_set`.execute(tx);
  }
  const out: Outcome[] = [];
  for (const unit of run) out.push(await runUnit(tx, unit));
  return { outcomes: out, fellBack: true };
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
