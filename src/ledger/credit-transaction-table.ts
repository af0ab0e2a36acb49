import type { Micros } from "./micros.js";

/** The `credit_transaction` table: the append-only credits ledger. */
export interface CreditTransactionTable {
  tx_id: string;
  project_id: string;
  /** live or test (the sandbox ledger, migration 0014); seq and idempotency keys are per project and environment. */
  environment: string;
  /** Orders a project's entries; balance_after follows it. */
  seq: number;
  /** grant, purchase, usage_debit, refund, adjustment, hold, hold_release, plan_credits, dispute, invoiced. */
  kind: string;
  /** Signed micro-USD: credits positive, debits negative. */
  amount_micros: Micros;
  balance_after_micros: Micros;
  /** Unique per project: the same key never books twice. */
  idempotency_key: string;
  description: string;
  usage_record_id: string | null;
  authorization_id: string | null;
  actor: string;
  create_time: number;
}
