/** The x402 table (migration 0013-rails). Times are epoch ms; money is micro-USD. */

/** `x402_payment`: one x402 payment payload, claimed before the facilitator is asked, credited once settled. */
export interface X402PaymentTable {
  payment_id: string;
  project_id: string;
  /** sha256 of the decoded payment payload's canonical JSON: unique, so a replay is refused. */
  payload_hash: string;
  /** pending (at the facilitator now), settled (credited), unknown (settlement's outcome not known; the payload may be retried). */
  state: string;
  amount_micros: number;
  network: string;
  payer: string;
  /** The settlement's transaction: unique per network, so one settlement credits once. */
  transaction_hash: string | null;
  /** The purchase ledger entry. */
  credit_tx_id: string | null;
  create_time: number;
  update_time: number;
}
