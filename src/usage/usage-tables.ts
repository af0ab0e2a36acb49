import type { Micros } from "../ledger/micros.js";

/** The `usage_record` table: one metered event, priced when recorded. */
export interface UsageRecordTable {
  record_id: string;
  project_id: string;
  request_id: string;
  /** Whose request id: `usage` (RecordUsage) or `invoke` (InvokeAgent); ids are unique per namespace (migration 0008). */
  request_namespace: string;
  /** live or test (the sandbox ledger, migration 0014); request ids are unique per environment. */
  environment: string;
  /** SHA-256 of the request's content, to refuse a reused request_id with other content. */
  request_hash: string;
  /** model or agent. */
  kind: string;
  model: string | null;
  agent: string | null;
  /** The project whose agent was charged (the agent is (agent_owner, id of `agent`)); null for model usage (migration 0015). */
  agent_owner: string | null;
  operation: string | null;
  input_tokens: number;
  output_tokens: number;
  cost_micros: number;
  /** The prices used (micro-USD per million tokens; per invocation). */
  input_price: number;
  output_price: number;
  invocation_price: number;
  api_key_id: string | null;
  recorded_by_kind: string;
  recorded_by: string;
  authorization_id: string | null;
  invocation: string | null;
  attributes: string;
  balance_after_micros: Micros;
  occur_time: number;
  create_time: number;
}

/**
 * The `usage_rollup` table: hourly report lines (src/usage/usage-rollups.ts),
 * kept in the same transaction as each record.
 */
export interface UsageRollupTable {
  project_id: string;
  /** live or test: test usage never reaches live reports (migration 0014). */
  environment: string;
  /** The hour's start, epoch ms. */
  hour: number;
  /** model, agent, or agent_model (tokens agents spent on the model). */
  subject_kind: string;
  subject: string;
  input_tokens: number;
  output_tokens: number;
  requests: number;
  cost_micros: number;
  /** The part of cost_micros paid for tokens (migration 0008). */
  token_cost_micros: number;
}

/** The `usage_authorization` table: holds placed before usage and settled by it. */
export interface UsageAuthorizationTable {
  auth_id: string;
  project_id: string;
  /** live or test: which ledger the hold reserves from (migration 0014). */
  environment: string;
  request_id: string;
  request_hash: string;
  held_micros: number;
  settled_micros: number;
  /** held, settled, released, expired. */
  state: string;
  model: string | null;
  agent: string | null;
  api_key_id: string | null;
  /** The wallet-token budget the hold was reserved from (migration 0007). */
  budget_id: string | null;
  usage_record_id: string | null;
  create_time: number;
  expire_time: number;
  close_time: number | null;
}
