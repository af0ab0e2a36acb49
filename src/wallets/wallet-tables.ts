/** Tables of wallet bindings and their challenges (migration 0007). */
export interface WalletChallengeTable {
  nonce: string;
  project_id: string;
  account_id: string;
  user_id: string;
  message: string;
  expire_time: number;
  use_time: number | null;
  create_time: number;
}

export interface WalletBindingTable {
  binding_id: string;
  project_id: string;
  /** CAIP-10, normalized (eip155 addresses lowercase). */
  account_id: string;
  chain_id: string;
  user_id: string;
  role: string;
  create_time: number;
}

/** A budget carried in wallet-token claims: per session or per wallet account, over rounds or a window. */
export interface WalletBudgetTable {
  budget_id: string;
  project_id: string;
  limit_micros: number;
  spent_micros: number;
  /** null: no round limit. */
  rounds_limit: number | null;
  rounds_used: number;
  /** null: no window (the budget lasts its rounds, or for ever). */
  window_ms: number | null;
  window_start: number;
  update_time: number;
}
