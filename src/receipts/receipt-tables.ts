/** The receipts table (migration 0013-rails). */

/** `ledger_entry_hash`: the hash chain over an account's ledger, extended in seq order as receipts are asked for. */
export interface LedgerEntryHashTable {
  project_id: string;
  /** live or test: each ledger has its own seq and its own chain. */
  environment: string;
  seq: number;
  /** Hex sha256 of the entry's canonical form and the previous entry's hash. */
  entry_hash: string;
}
