/** The `api_key` table: standard and scoped keys. Only a hash of the secret is stored. */
export interface ApiKeyTable {
  key_id: string;
  project_id: string;
  /** live or test. */
  environment: string;
  /** standard or scoped. */
  kind: string;
  display_name: string;
  /** SHA-256 of the secret, hex. */
  secret_hash: string;
  /** Comma list of read, write, admin. */
  scopes: string;
  /** active, revoked or rotated; expiry is derived from expire_time. */
  status: string;
  expire_time: number | null;
  revoke_time: number | null;
  revoke_reason: string | null;
  rate_limit_rps: number | null;
  rate_limit_burst: number | null;
  spend_cap_micros: number | null;
  spent_micros: number;
  /** JSON arrays. */
  allowed_cidrs: string;
  allowed_models: string;
  allowed_methods: string;
  parent_key_id: string | null;
  replaced_by: string | null;
  /** user or api_key. */
  created_by_kind: string;
  created_by: string;
  /** The creator's role when the key was made: a key never exceeds it. */
  creator_role: string;
  create_request_id: string | null;
  last_used_time: number | null;
  create_time: number;
  update_time: number;
}
