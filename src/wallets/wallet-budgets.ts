/**
 * Budgets carried in wallet-token claims, enforced on the metering path in the
 * same transaction as the debit: each reservation is one conditional UPDATE
 * (`spent + cost <= limit`), atomic on SQLite and PostgreSQL alike, so
 * concurrent calls can never overspend. Ranges: `rounds` bounds how many
 * metered calls the budget covers; `duration` makes it a budget per window of
 * that many seconds (the window starts at first use and renews when it ends).
 */
import { createHash } from "node:crypto";
import type { ConnectError } from "@connectrpc/connect";
import { sql } from "kysely";
import { LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { paymentRequired } from "../billing/payment-required.js";
import type { Db } from "../db/database.js";
import type { WalletBudgetClaim } from "./wallet-token.js";

/** A budget as a call carries it: its row id and the claim that defines it. */
export interface BudgetRef {
  id: string;
  projectId: string;
  claim: WalletBudgetClaim;
}

/**
 * Session budgets are per session; account budgets are shared by every token
 * of the wallet that declares the same budget (a new declaration is a new grant).
 */
export function budgetIdOf(claim: WalletBudgetClaim, accountId: string, sessionId: string): string {
  const owner = claim.scope === "session" ? `session\n${sessionId}` : `account\n${accountId}`;
  const decl = JSON.stringify([claim.limitMicros, claim.range?.type ?? "", claim.range ? (claim.range.type === "rounds" ? claim.range.count : claim.range.seconds) : 0]);
  return `b${createHash("sha256").update(`${owner}\n${decl}`).digest("hex").slice(0, 31)}`;
}

/** Creates the budget's row on first sight (a session lists its budget before spending from it). */
export async function ensureBudget(tx: Db, budget: BudgetRef, now: number): Promise<void> {
  const { claim } = budget;
  await tx
    .insertInto("wallet_budget")
    .values({
      budget_id: budget.id,
      project_id: budget.projectId,
      limit_micros: claim.limitMicros,
      spent_micros: 0,
      rounds_limit: claim.range?.type === "rounds" ? claim.range.count : null,
      rounds_used: 0,
      window_ms: claim.range?.type === "duration" ? claim.range.seconds * 1000 : null,
      window_start: now,
      update_time: now,
    })
    .onConflict((oc) => oc.column("budget_id").doNothing())
    .execute();
}

/** Reserves `cost` (and one round) or throws payment required (FAILED_PRECONDITION) with the spend-cap reason. */
export async function reserveBudget(tx: Db, budget: BudgetRef, cost: number, now: number): Promise<void> {
  const { claim } = budget;
  await ensureBudget(tx, budget, now);
  if (claim.range?.type === "duration") {
    await tx
      .updateTable("wallet_budget")
      .set({ spent_micros: 0, rounds_used: 0, window_start: now, update_time: now })
      .where("budget_id", "=", budget.id)
      .where(sql<boolean>`window_start + window_ms <= ${now}`)
      .execute();
  }
  const result = await tx
    .updateTable("wallet_budget")
    .set((eb) => ({ spent_micros: eb("spent_micros", "+", cost), rounds_used: eb("rounds_used", "+", 1), update_time: now }))
    .where("budget_id", "=", budget.id)
    .where(sql<boolean>`spent_micros + ${cost} <= limit_micros`)
    .where((eb) => eb.or([eb("rounds_limit", "is", null), eb("rounds_used", "<", eb.ref("rounds_limit"))]))
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) === 1) return;
  throw await budgetExhausted(tx, budget, cost, now);
}

/** Why a reservation would fail now, or undefined when it would succeed (reads only). */
export async function budgetRefusal(db: Db, budget: BudgetRef, cost: number, now: number): Promise<string | undefined> {
  const row = await db.selectFrom("wallet_budget").selectAll().where("budget_id", "=", budget.id).executeTakeFirst();
  const windowOver = row?.window_ms != null && row.window_start + row.window_ms <= now;
  const spent = !row || windowOver ? 0 : row.spent_micros;
  const rounds = !row || windowOver ? 0 : row.rounds_used;
  const roundsLimit = budget.claim.range?.type === "rounds" ? budget.claim.range.count : null;
  if (roundsLimit !== null && rounds >= roundsLimit) return `the wallet token's budget covers ${roundsLimit} rounds and all are used`;
  if (spent + cost > budget.claim.limitMicros) {
    return `wallet token budget reached: ${spent} of ${budget.claim.limitMicros} micro-USD spent${windowLabel(budget)}, this call needs ${cost}`;
  }
  return undefined;
}

function windowLabel(budget: BudgetRef): string {
  return budget.claim.range?.type === "duration" ? ` in this ${budget.claim.range.seconds}-second window` : "";
}

async function budgetExhausted(tx: Db, budget: BudgetRef, cost: number, now: number): Promise<ConnectError> {
  const row = await tx.selectFrom("wallet_budget").select(["spent_micros"]).where("budget_id", "=", budget.id).executeTakeFirstOrThrow();
  const message = (await budgetRefusal(tx, budget, cost, now)) ?? `wallet token budget reached for this call of ${cost} micro-USD`;
  return paymentRequired({
    reason: LimitReason.SPEND_CAP,
    projectId: budget.projectId,
    requestedMicros: cost,
    availableMicros: budget.claim.limitMicros - row.spent_micros,
    limitMicros: budget.claim.limitMicros,
    usedMicros: row.spent_micros,
    message,
  });
}

/** Gives back a released or expired hold's amount and round (never below zero). */
export async function refundBudget(tx: Db, budgetId: string, amount: number, now: number): Promise<void> {
  await tx
    .updateTable("wallet_budget")
    .set({
      spent_micros: sql<number>`CASE WHEN spent_micros >= ${amount} THEN spent_micros - ${amount} ELSE 0 END`,
      rounds_used: sql<number>`CASE WHEN rounds_used >= 1 THEN rounds_used - 1 ELSE 0 END`,
      update_time: now,
    })
    .where("budget_id", "=", budgetId)
    .execute();
}

/** Settling a hold: the actual cost replaces the estimate (the work is done, so this may pass the limit). */
export async function settleBudget(tx: Db, budgetId: string, held: number, cost: number, now: number): Promise<void> {
  const delta = cost - held;
  if (delta === 0) return;
  await tx
    .updateTable("wallet_budget")
    .set({ spent_micros: sql<number>`CASE WHEN spent_micros + ${delta} >= 0 THEN spent_micros + ${delta} ELSE 0 END`, update_time: now })
    .where("budget_id", "=", budgetId)
    .execute();
}
