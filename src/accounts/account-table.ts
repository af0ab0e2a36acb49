import type { Generated } from "kysely";
import type { Micros } from "../ledger/micros.js";

/** The `account` table: one row per project. */
export interface AccountTable {
  project_id: string;
  display_name: string;
  billing_email: string;
  /** A plan tier id from the plans configuration: free, pro, enterprise. */
  plan_tier: string;
  /** none, active, trialing, past_due, canceled, unpaid. */
  subscription_status: string;
  /** Integer micro-USD; a bigint past 2^53 (src/ledger/micros.ts). */
  credit_balance_micros: Micros;
  /** The test-mode sandbox balance (migration 0014): what fs_test_ keys spend; never real money. */
  test_credit_balance_micros: Generated<Micros>;
  /** live or test (migration 0016): a test-mode project meters only its sandbox; fixed at creation. */
  environment: Generated<string>;
  /** The subject that created the account. */
  created_by: string;
  /** The request_id of the create, so a retried create answers the same. */
  create_request_id: string | null;
  create_time: number;
  update_time: number;
}

export const accountTable = "account";
