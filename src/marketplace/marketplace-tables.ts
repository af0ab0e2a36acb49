/** The `publisher_earning` table: the append-only earnings ledger of publishers (migration 0012). */
export interface PublisherEarningTable {
  entry_id: string;
  publisher_project: string;
  /** earning (a split of a consumer's debit), clawback, payout, payout_reversal. */
  kind: string;
  /** `agents/{agent}` or `models/{provider}/{model}`; "" for payouts. */
  resource: string;
  consumer_project: string | null;
  usage_record_id: string | null;
  payout_id: string | null;
  /** For clawbacks: the earning entry taken back. */
  earning_entry_id: string | null;
  share_bps: number;
  /** The consumer's money this entry splits (signed: negative for clawbacks); 0 for payouts. */
  gross_micros: number;
  /** The publisher's side (signed): earnings positive, clawbacks and payouts negative. */
  amount_micros: number;
  /** The platform's side: gross − amount for splits; 0 for payouts. */
  platform_fee_micros: number;
  /** Unique: the same key never books twice. */
  idempotency_key: string;
  create_time: number;
}

/** The `payout_account` table: a publisher project's Stripe Connect account. */
export interface PayoutAccountTable {
  project_id: string;
  stripe_account_id: string;
  create_time: number;
}

/** The `payout` table: the payout outbox, one row per publisher and schedule period. */
export interface PayoutTable {
  payout_id: string;
  publisher_project: string;
  /** The schedule period that created it; unique per publisher, so a period pays once. */
  period_key: string;
  stripe_account_id: string;
  amount_micros: number;
  /** pending, paid, failed. */
  status: string;
  attempts: number;
  next_attempt_time: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_error: string | null;
  stripe_transfer_id: string | null;
  create_time: number;
  paid_time: number | null;
}
