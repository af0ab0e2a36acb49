/**
 * The invoicing rule: which part of a usage debit Stripe's meter invoices.
 *
 * Usage is paid from prepaid credits first (plan credits, purchases, grants)
 * and those are never invoiced again. Only overage is metered: the part of a
 * debit that takes the balance below zero, on plans billed in arrears
 * (plans that allow overdraft). The metered amount is moved off the balance
 * in the same transaction (an `invoiced` ledger entry), since it is now owed
 * on the Stripe invoice rather than to the credits; so a later purchase never
 * pays it a second time. Prepaid plans are never metered: their balance can
 * go below zero only by settling a hold above its estimate or by a refund or
 * dispute, and the account is refused until credits are bought.
 */

export interface DebitFacts {
  /** The plan allows a negative balance (billed in arrears). */
  overdraftAllowed: boolean;
  /** The balance just before the debit, micro-USD. */
  balanceBefore: number;
  /** The debit's cost, micro-USD (positive). */
  cost: number;
}

/** Micro-USD of this debit to report to Stripe's meter (0 when prepaid credits paid all of it). */
export function invoicedPart(d: DebitFacts): number {
  if (!d.overdraftAllowed || d.cost <= 0) return 0;
  return Math.min(d.cost, d.cost - Math.max(0, Math.min(d.balanceBefore, d.cost)));
}
