/** The `account` table: one row per project. */
export interface AccountTable {
  project_id: string;
  display_name: string;
  billing_email: string;
  /** A plan tier id from the plans configuration: free, pro, enterprise. */
  plan_tier: string;
  /** none, active, trialing, past_due, canceled, unpaid. */
  subscription_status: string;
  /** Integer micro-USD. */
  credit_balance_micros: number;
  /** The subject that created the account. */
  created_by: string;
  /** The request_id of the create, so a retried create answers the same. */
  create_request_id: string | null;
  create_time: number;
  update_time: number;
}

export const accountTable = "account";
