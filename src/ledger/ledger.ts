/**
 * The credits ledger: append-only entries, each with an idempotency key and
 * the balance after it. The account's balance column and the ledger move
 * together in the caller's transaction, so the balance always equals the sum
 * of the ledger. Checks against the balance (credits, overdraft) belong to
 * the caller, in the same transaction, before it books.
 *
 * A project has two ledgers: `live` (real money) and `test`, the sandbox that
 * test keys spend (docs/test-mode.md). Each has its own balance column,
 * sequence and idempotency keys; every function here takes the environment
 * and defaults to live, so nothing reads or moves sandbox credits unasked.
 * Amounts are exact past 2^53 (micros.ts).
 */
import { countBooked } from "./ledger-metrics.js";
import { type Selectable, sql } from "kysely";
import { touch } from "../db/commit-hooks.js";
import type { Db } from "../db/database.js";
import { prepared, preparedInsert } from "../db/prepared.js";
import { newSortableId } from "../ids.js";
import type { CreditTransactionTable } from "./credit-transaction-table.js";
import type { Micros } from "./micros.js";

/** Which ledger: live money or the test-mode sandbox. */
export type Environment = "live" | "test";

export type LedgerKind = "grant" | "purchase" | "usage_debit" | "refund" | "adjustment" | "hold" | "hold_release" | "plan_credits" | "dispute" | "invoiced";
export type LedgerRow = Selectable<CreditTransactionTable>;

export interface LedgerEntry {
  projectId: string;
  kind: LedgerKind;
  /** Signed micro-USD: credits positive, debits negative. */
  amountMicros: Micros;
  /** Which ledger; live when absent. */
  environment?: Environment;
  idempotencyKey: string;
  description?: string;
  usageRecordId?: string;
  authorizationId?: string;
  actor?: string;
}

/** The project's balance in one ledger (inside a transaction when it guards a write). */
export async function balanceOf(tx: Db, projectId: string, environment: Environment = "live"): Promise<Micros> {
  const [r] = await balancesQuery(tx, projectId);
  return (environment === "test" ? r?.test_credit_balance_micros : r?.credit_balance_micros) ?? 0;
}

/** An entry already booked under this idempotency key in this ledger, if any. */
export async function findByIdempotencyKey(tx: Db, projectId: string, key: string, environment: Environment = "live"): Promise<LedgerRow | undefined> {
  return (await byKeyQuery(tx, projectId, environment, key))[0];
}

// Prepared (src/db/prepared.ts): read on every booking and every metered record.
const balancesQuery = prepared((tx, projectId: string) => tx.selectFrom("account").select(["credit_balance_micros", "test_credit_balance_micros"]).where("project_id", "=", projectId));
const byKeyQuery = prepared((tx, projectId: string, environment: string, key: string) =>
  tx.selectFrom("credit_transaction").selectAll().where("project_id", "=", projectId).where("environment", "=", environment).where("idempotency_key", "=", key),
);
const lastSeqQuery = prepared((tx, projectId: string, environment: string) =>
  tx.selectFrom("credit_transaction").select((eb) => eb.fn.max("seq").as("seq")).where("project_id", "=", projectId).where("environment", "=", environment),
);
const insertEntries = preparedInsert("credit_transaction");
const moveLive = prepared((tx, projectId: string, amount: Micros, now: number) =>
  tx.updateTable("account").set((eb) => ({ credit_balance_micros: eb("credit_balance_micros", "+", amount), update_time: now })).where("project_id", "=", projectId),
);
const moveTest = prepared((tx, projectId: string, amount: Micros, now: number) =>
  tx.updateTable("account").set((eb) => ({ test_credit_balance_micros: eb("test_credit_balance_micros", "+", amount), update_time: now })).where("project_id", "=", projectId),
);

/**
 * Books an entry (inside a write transaction): moves the balance and appends
 * the entry. A key booked before returns that entry and moves nothing.
 */
export async function book(tx: Db, entry: LedgerEntry, now: number): Promise<{ row: LedgerRow; duplicate: boolean }> {
  const environment = entry.environment ?? "live";
  const existing = await findByIdempotencyKey(tx, entry.projectId, entry.idempotencyKey, environment);
  if (existing) return { row: existing, duplicate: true };
  // The project's cached balances and holds (state-cache.ts) are dropped after this commits.
  touch(tx, { projects: [entry.projectId] });
  // Three statements on the hot path (metering books on every call): the balance comes back from its
  // own update, the next seq is computed inside the insert.
  const update = tx.updateTable("account").where("project_id", "=", entry.projectId);
  const moved =
    environment === "test"
      ? (await update
          .set((eb) => ({ test_credit_balance_micros: eb("test_credit_balance_micros", "+", entry.amountMicros), update_time: now }))
          .returning("test_credit_balance_micros as balance")
          .executeTakeFirst())
      : (await update
          .set((eb) => ({ credit_balance_micros: eb("credit_balance_micros", "+", entry.amountMicros), update_time: now }))
          .returning("credit_balance_micros as balance")
          .executeTakeFirst());
  const row: LedgerRow = {
    tx_id: newSortableId(),
    project_id: entry.projectId,
    environment,
    seq: 0,
    kind: entry.kind,
    amount_micros: entry.amountMicros,
    balance_after_micros: moved?.balance ?? 0,
    idempotency_key: entry.idempotencyKey,
    description: entry.description ?? "",
    usage_record_id: entry.usageRecordId ?? null,
    authorization_id: entry.authorizationId ?? null,
    actor: entry.actor ?? "",
    create_time: now,
  };
  const inserted = await tx
    .insertInto("credit_transaction")
    .values({
      ...row,
      // max + 1 is safe: the caller's write transaction holds the project's write lock.
      seq: sql<number>`(select coalesce(max(seq), 0) + 1 from credit_transaction where project_id = ${entry.projectId} and environment = ${environment})`,
    })
    .returning("seq")
    .executeTakeFirstOrThrow();
  row.seq = Number(inserted.seq);
  countBooked(entry.amountMicros);
  return { row, duplicate: false };
}

// ---- set-based booking (src/usage/record-set.ts): entries decided in memory, written together ----

/** The highest seq of a project's ledger (0 when empty): a set writer numbers its entries after it. */
export async function lastSeq(tx: Db, projectId: string, environment: Environment): Promise<number> {
  const [r] = await lastSeqQuery(tx, projectId, environment);
  return Number(r?.seq ?? 0);
}

/** The entry `book` would append after `balanceBefore` and `previousSeq` (nothing written). */
export function entryRow(entry: LedgerEntry, previousSeq: number, balanceAfter: Micros, now: number): LedgerRow {
  return {
    tx_id: newSortableId(),
    project_id: entry.projectId,
    environment: entry.environment ?? "live",
    seq: previousSeq + 1,
    kind: entry.kind,
    amount_micros: entry.amountMicros,
    balance_after_micros: balanceAfter,
    idempotency_key: entry.idempotencyKey,
    description: entry.description ?? "",
    usage_record_id: entry.usageRecordId ?? null,
    authorization_id: entry.authorizationId ?? null,
    actor: entry.actor ?? "",
    create_time: now,
  };
}

/** A ledger's balance change from a committed set of entries. */
export interface BalanceDelta {
  projectId: string;
  environment: Environment;
  amountMicros: Micros;
  /** The last entry's time (the account's update_time). */
  now: number;
}

/**
 * Appends entries decided in memory (numbered by `entryRow` after `lastSeq`)
 * and moves each ledger's balance once by its sum: the set-based `book`.
 * The one place a set writer changes balances (a balance cache hooks here).
 */
export async function bookAll(tx: Db, rows: LedgerRow[], deltas: BalanceDelta[]): Promise<void> {
  // As in `book`: the cached balances of these projects are dropped after the commit (state-cache.ts).
  touch(tx, { projects: new Set([...rows.map((r) => r.project_id), ...deltas.map((d) => d.projectId)]) });
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) await insertEntries(tx, rows.slice(i, i + INSERT_CHUNK));
  for (const d of deltas) await (d.environment === "test" ? moveTest : moveLive)(tx, d.projectId, d.amountMicros, d.now);
  for (const r of rows) countBooked(r.amount_micros);
}

/** Rows per multi-row INSERT (well under SQLite's and PostgreSQL's bound-parameter limits). */
const INSERT_CHUNK = 500;

/** The sum of a project's ledger (for audits and tests: it must equal that ledger's balance). */
export async function ledgerSum(db: Db, projectId: string, environment: Environment = "live"): Promise<Micros> {
  const r = await db
    .selectFrom("credit_transaction")
    .select((eb) => eb.fn.sum<Micros>("amount_micros").as("sum"))
    .where("project_id", "=", projectId)
    .where("environment", "=", environment)
    .executeTakeFirst();
  // PostgreSQL's sum is numeric: a number or bigint already; SQLite's too (exact-integers.ts).
  return r?.sum ?? 0;
}

export interface LedgerFilter {
  kinds: LedgerKind[];
  startTime?: number;
  endTime?: number;
  /** Which ledger; live when absent. */
  environment?: Environment;
}

/** Entries newest first, after the seq cursor. */
export function listEntries(db: Db, projectId: string, filter: LedgerFilter, limit: number, beforeSeq?: number): Promise<LedgerRow[]> {
  let q = db.selectFrom("credit_transaction").selectAll().where("project_id", "=", projectId).where("environment", "=", filter.environment ?? "live");
  if (filter.kinds.length) q = q.where("kind", "in", filter.kinds);
  if (filter.startTime !== undefined) q = q.where("create_time", ">=", filter.startTime);
  if (filter.endTime !== undefined) q = q.where("create_time", "<", filter.endTime);
  if (beforeSeq !== undefined) q = q.where("seq", "<", beforeSeq);
  return q.orderBy("seq", "desc").limit(limit).execute();
}
