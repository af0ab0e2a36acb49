/** The `api_key_event` table: the audit log of keys. */
export interface ApiKeyEventTable {
  event_id: string;
  project_id: string;
  key_id: string;
  /** created, updated, rotated, revoked, used_from_new_ip, rate_limited, expired, scoped_key_created. */
  type: string;
  /** user, api_key or system. */
  actor_kind: string;
  actor: string;
  actor_ip: string;
  /** JSON object of strings. */
  details: string;
  /** Orders events within a project (time, then insertion). */
  seq: number;
  create_time: number;
}

/** The `api_key_ip` table: addresses each key was used from, to spot a new one. */
export interface ApiKeyIpTable {
  key_id: string;
  ip: string;
  first_seen_time: number;
}
