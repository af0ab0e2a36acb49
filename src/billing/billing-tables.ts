/** The billing tables (migration 0005-billing). Times are epoch ms; money is micro-USD. */

/** `billing_customer`: an account's Stripe customer and the subscription state last read from Stripe. */
export interface BillingCustomerTable {
  project_id: string;
  /** `cus_...`, created when first needed. */
  stripe_customer_id: string;
  /** `sub_...`: the subscription that decides the plan. */
  stripe_subscription_id: string | null;
  /** Stripe's own status: active, trialing, past_due, canceled, unpaid, incomplete, incomplete_expired, paused. */
  stripe_status: string | null;
  stripe_price_id: string | null;
  current_period_start: number | null;
  current_period_end: number | null;
  /** 0 or 1. */
  cancel_at_period_end: number;
  create_time: number;
  update_time: number;
}

/** `stripe_event`: every webhook event applied, recorded in the transaction of its effect. */
export interface StripeEventTable {
  /** `evt_...`. */
  event_id: string;
  type: string;
  project_id: string | null;
  /** What it did: applied, or why it was ignored. */
  outcome: string;
  process_time: number;
}

/** `checkout_fulfillment`: a paid Checkout session, fulfilled once (by ProcessCheckout or the webhook). */
export interface CheckoutFulfillmentTable {
  /** `cs_...`. */
  session_id: string;
  project_id: string;
  /** credits or plan. */
  kind: string;
  plan_id: string | null;
  granted_micros: number;
  /** process_checkout or webhook. */
  fulfilled_by: string;
  create_time: number;
  /** `pi_...` of a credit purchase: its charge's refunds and disputes take the credits back (migration 0008). */
  payment_intent_id: string | null;
}

/** `meter_outbox`: usage debits waiting to be (or already) reported to Stripe as meter events. */
export interface MeterOutboxTable {
  /** The meter event's identifier, stable across retries: `fs-usage-{usage_record_id}`. */
  identifier: string;
  project_id: string;
  stripe_customer_id: string;
  value_micros: number;
  /** When the usage happened (the meter event's timestamp). */
  event_time: number;
  /** pending, sent, or failed (Stripe refused it or it is too old; an operator looks at last_error). */
  status: string;
  attempts: number;
  next_attempt_time: number;
  /** The sender holding the row while it sends, until lease_until. */
  lease_owner: string | null;
  lease_until: number | null;
  last_error: string | null;
  create_time: number;
  sent_time: number | null;
}
