/**
 * Process-wide counts of ledger entries booked, read by /metrics. Counted when
 * the entry is written inside its transaction: a transaction that then rolls
 * back has still been counted (rare: the write path retries only on busy).
 */
import type { Micros } from "./micros.js";

export const ledgerCounts = { debits: 0, debitMicros: 0, credits: 0, creditMicros: 0 };

export function countBooked(amount: Micros): void {
  const n = Number(amount);
  if (n < 0) {
    ledgerCounts.debits++;
    ledgerCounts.debitMicros -= n;
  } else if (n > 0) {
    ledgerCounts.credits++;
    ledgerCounts.creditMicros += n;
  }
}
