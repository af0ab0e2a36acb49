/**
 * Money flowing back: a refunded or disputed credit purchase takes back the
 * credits it bought. The amounts come from the charge's current state as
 * Stripe tells it (read again on every event), so late, early, repeated or
 * partial events all converge on the same books:
 * - refunded: the refunded fraction of the credits (`refund` entries);
 * - disputed: the disputed fraction while the dispute is open or lost
 *   (`dispute` entries), given back when it is won or an inquiry closes;
 * - never more than the purchase granted in all.
 * Each event books only the difference between that target and what the
 * ledger already holds for the charge. The balance may go below zero; the
 * account is then refused (payment required) until credits are bought.
 */
import type { Db } from "../db/database.js";
import * as ledger from "../ledger/ledger.js";
import type { FulfillmentRow } from "./billing-store.js";

/** Dispute statuses in which the money is back with the merchant. */
const RETURNED = new Set(["won", "warning_closed"]);

export interface ChargeState {
  id: string;
  /** Cents charged. */
  amount: number;
  /** Cents refunded so far. */
  amountRefunded: number;
  disputes: Array<{ amount: number; status: string }>;
}

/** Credits to take back for `cents` of a purchase of `granted` micro-USD paid with `amount` cents (rounded up: never give credits away). */
function share(granted: number, cents: number, amount: number): number {
  if (amount <= 0 || cents <= 0) return 0;
  return Number((BigInt(granted) * BigInt(Math.min(cents, amount)) + BigInt(amount) - 1n) / BigInt(amount));
}

/** What should be taken back for a charge in this state (positive micro-USD), by reason. */
export function clawbackTargets(granted: number, charge: ChargeState): { refund: number; dispute: number } {
  const refund = share(granted, charge.amountRefunded, charge.amount);
  const disputedCents = charge.disputes.filter((d) => !RETURNED.has(d.status)).reduce((sum, d) => sum + d.amount, 0);
  const dispute = Math.min(share(granted, disputedCents, charge.amount), granted - refund);
  return { refund, dispute: Math.max(dispute, 0) };
}

/** What the ledger already took back for a charge, by reason (positive micro-USD), and how many entries. */
async function booked(tx: Db, projectId: string, kind: "refund" | "dispute", chargeId: string): Promise<{ taken: number; entries: number }> {
  const r = await tx
    .selectFrom("credit_transaction")
    .select((eb) => [eb.fn.sum<number>("amount_micros").as("sum"), eb.fn.countAll<number>().as("n")])
    .where("project_id", "=", projectId)
    .where("environment", "=", "live")
    .where("idempotency_key", "like", `${kind}:${chargeId}:%`)
    .executeTakeFirst();
  return { taken: -Number(r?.sum ?? 0), entries: Number(r?.n ?? 0) };
}

/** What one clawback entry took (positive) or gave back (negative), and the balance after it. */
export interface ClawbackEntry {
  taken: number;
  balanceAfter: number;
  key: string;
}

/** Books the difference between the targets and the ledger, inside the event's transaction; returns what moved. */
export async function applyClawbacks(
  tx: Db,
  purchase: FulfillmentRow,
  charge: ChargeState,
  now: number,
  onEntry?: (entry: ClawbackEntry) => Promise<unknown>,
): Promise<{ refund: number; dispute: number }> {
  const targets = clawbackTargets(Number(purchase.granted_micros), charge);
  const moved = { refund: 0, dispute: 0 };
  for (const kind of ["refund", "dispute"] as const) {
    const { taken, entries } = await booked(tx, purchase.project_id, kind, charge.id);
    const delta = targets[kind] - taken;
    if (delta === 0) continue;
    const what = kind === "refund" ? "refunded" : delta > 0 ? "disputed" : "dispute closed in our favour";
    const key = `${kind}:${charge.id}:${entries + 1}`;
    const { row } = await ledger.book(
      tx,
      {
        projectId: purchase.project_id,
        kind,
        amountMicros: -delta,
        idempotencyKey: key,
        description: `credit pack ${what}: Stripe charge ${charge.id}, Checkout ${purchase.session_id}`,
      },
      now,
    );
    moved[kind] = delta;
    await onEntry?.({ taken: delta, balanceAfter: Number(row.balance_after_micros), key });
  }
  return moved;
}
