/** The spend-alert tables (migration 0013-rails). Times are epoch ms; money is micro-USD. */

/** `alert_rule`: a spend threshold of an account, or of one of its keys, and where to tell. */
export interface AlertRuleTable {
  rule_id: string;
  project_id: string;
  /** Set for a key's rule; null for the account's. */
  api_key_id: string | null;
  /** Absolute threshold (0 when the rule is a percentage). */
  threshold_micros: number;
  /** Percentage threshold, 1 to 100 (0 when the rule is absolute). */
  threshold_percent: number;
  endpoint_url: string;
  /** The HMAC-SHA256 key of the rule's webhooks (`whsec_...`): a shared secret, shown once at creation. */
  signing_secret: string;
  description: string;
  create_time: number;
}

/** `alert_firing`: a rule fired in a period (once per rule and period). */
export interface AlertFiringTable {
  rule_id: string;
  /** `2026-12` for monthly spend; `cap:{micros}` for a percentage of a key's spend cap. */
  period: string;
  event_id: string;
  fire_time: number;
}

/** `webhook_delivery`: the outbox of signed webhooks and their delivery log. */
export interface WebhookDeliveryTable {
  /** Also the event id the receiver de-duplicates by. */
  delivery_id: string;
  project_id: string;
  rule_id: string;
  event_type: string;
  endpoint_url: string;
  /** The exact JSON body sent (and signed). */
  payload: string;
  /** pending, delivered, failed (gave up). */
  state: string;
  attempts: number;
  next_attempt_time: number;
  lease_owner: string | null;
  /** HTTP status of the last attempt; null when it got no answer. */
  last_status: number | null;
  last_error: string;
  create_time: number;
  deliver_time: number | null;
}
