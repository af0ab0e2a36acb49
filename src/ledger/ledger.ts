/**
 * The credits ledger: append-only entries, each with an idempotency key and
 * the balance after it. The account's balance column and the ledger move
 * together in the caller's transaction, so the balance always equals the sum
 * of the ledger. Checks against the balance (credits, overdraft) belong to
 * the caller, in the same transaction, before it books.
 */
import { type Selectable, sql } from "kysely";
import type { Db } from "../db/database.js";
import { newId } from "../ids.js";
import type { CreditTransactionTable } from "./credit-transaction-table.js";

export type LedgerKind = "grant" | "purchase" | "usage_debit" | "refund" | "adjustment" | "hold" | "hold_release" | "plan_credits" | "dispute" | "invoiced";
export type LedgerRow = Selectable<CreditTransactionTable>;

export interface LedgerEntry {
  projectId: string;
  kind: LedgerKind;
  /** Signed micro-USD: credits positive, debits negative. */
  amountMicros: number;
  idempotencyKey: string;
  description?: string;
  usageRecordId?: string;
  authorizationId?: string;
  actor?: string;
}

/** The project's balance inside a transaction. */
export async function balanceOf(tx: Db, projectId: string): Promise<number> {
  const r = await tx.selectFrom("account").select("credit_balance_micros").where("project_id", "=", projectId).executeTakeFirst();
  return Number(r?.credit_balance_micros ?? 0);
}

/** An entry already booked under this idempotency key, if any. */
export function findByIdempotencyKey(tx: Db, projectId: string, key: string): Promise<LedgerRow | undefined> {
  return tx.selectFrom("credit_transaction").selectAll().where("project_id", "=", projectId).where("idempotency_key", "=", key).executeTakeFirst();
}

/**
 * Books an entry (inside a write transaction): moves the balance and appends
 * the entry. A key booked before returns that entry and moves nothing.
 */
export async function book(tx: Db, entry: LedgerEntry, now: number): Promise<{ row: LedgerRow; duplicate: boolean }> {
  const existing = await findByIdempotencyKey(tx, entry.projectId, entry.idempotencyKey);
  if (existing) return { row: existing, duplicate: true };
  // Three statements on the hot path (metering books on every call): the balance comes back from its
  // own update, the next seq is computed inside the insert.
  const moved = await tx
    .updateTable("account")
    .set((eb) => ({ credit_balance_micros: eb("credit_balance_micros", "+", entry.amountMicros), update_time: now }))
    .where("project_id", "=", entry.projectId)
    .returning("credit_balance_micros")
    .executeTakeFirst();
  const row: LedgerRow = {
    tx_id: newId(),
    project_id: entry.projectId,
    seq: 0,
    kind: entry.kind,
    amount_micros: entry.amountMicros,
    balance_after_micros: Number(moved?.credit_balance_micros ?? 0),
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
      seq: sql<number>`(select coalesce(max(seq), 0) + 1 from credit_transaction where project_id = ${entry.projectId})`,
    })
    .returning("seq")
    .executeTakeFirstOrThrow();
  row.seq = Number(inserted.seq);
  return { row, duplicate: false };
}

/** The sum of a project's ledger (for audits and tests: it must equal the balance). */
export async function ledgerSum(db: Db, projectId: string): Promise<number> {
  const r = await db
    .selectFrom("credit_transaction")
    .select((eb) => eb.fn.sum<number>("amount_micros").as("sum"))
    .where("project_id", "=", projectId)
    .executeTakeFirst();
  return Number(r?.sum ?? 0);
}

export interface LedgerFilter {
  kinds: LedgerKind[];
  startTime?: number;
  endTime?: number;
}

/** Entries newest first, after the seq cursor. */
export function listEntries(db: Db, projectId: string, filter: LedgerFilter, limit: number, beforeSeq?: number): Promise<LedgerRow[]> {
  let q = db.selectFrom("credit_transaction").selectAll().where("project_id", "=", projectId);
  if (filter.kinds.length) q = q.where("kind", "in", filter.kinds);
  if (filter.startTime !== undefined) q = q.where("create_time", ">=", filter.startTime);
  if (filter.endTime !== undefined) q = q.where("create_time", "<", filter.endTime);
  if (beforeSeq !== undefined) q = q.where("seq", "<", beforeSeq);
  return q.orderBy("seq", "desc").limit(limit).execute();
}
