/** Sign-in sessions and revoke-all cut-offs (migration 0007). */
export interface AuthSessionTable {
  session_id: string;
  project_id: string;
  /** idp or wallet. */
  kind: string;
  subject: string;
  create_time: number;
  last_seen_time: number;
  expire_time: number | null;
  revoke_time: number | null;
  revoke_reason: string | null;
  budget_id: string | null;
}

/** Tokens of `subject` issued before `revoke_before` (ms) fail. */
export interface SessionCutoffTable {
  project_id: string;
  subject: string;
  revoke_before: number;
}
