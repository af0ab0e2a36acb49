/** The `model` table: a priced model, platform-wide (no owner) or a project's. */
export interface ModelTable {
  /** `provider/model`. */
  model_id: string;
  owner_project: string | null;
  provider: string;
  display_name: string;
  description: string;
  context_window: number;
  /** The current price, micro-USD per million tokens; the latest row of `model_price`. */
  input_price: number;
  output_price: number;
  /** active, deprecated, disabled. */
  status: string;
  /** public or private (owner only); platform-wide models are public. */
  visibility: string;
  /** The publisher's share of other projects' spend, basis points; null = the platform default (migration 0012). */
  publisher_share_bps: number | null;
  /** Who created it and with which request_id, so a retried create returns the model (AIP-155). */
  created_by: string | null;
  create_request_id: string | null;
  create_time: number;
  update_time: number;
}

/** The `model_price` table: every price a model has had, from when it applied. */
export interface ModelPriceTable {
  model_id: string;
  /** Epoch ms from which the price applies (until the next row's). */
  effective_from: number;
  input_price: number;
  output_price: number;
}

/** The `agent_price` table: every per-invocation price an agent has had, from when it applied (migration 0014; keyed by owner and id since 0015). */
export interface AgentPriceTable {
  owner_project: string;
  agent_id: string;
  /** Epoch ms from which the price applies (until the next row's). */
  effective_from: number;
  price_per_invocation: number;
}

/**
 * The `agent` table: a published agent and who may see it. Keyed by
 * (owner_project, agent_id) since migration 0015: each project has its own
 * agent ids; public agents' ids are unique among public agents.
 */
export interface AgentTable {
  agent_id: string;
  owner_project: string;
  display_name: string;
  description: string;
  /** JSON array of model names. */
  models: string;
  price_per_invocation: number;
  /** active, deprecated, disabled. */
  status: string;
  /** private, shared, public. */
  visibility: string;
  /** JSON array of project ids (for shared). */
  shared_with: string;
  /** The publisher's share of other projects' spend, basis points; null = the platform default (migration 0012). */
  publisher_share_bps: number | null;
  created_by: string | null;
  create_request_id: string | null;
  create_time: number;
  update_time: number;
}

/** The `hire` table: an agent in one of a project's slots. */
export interface HireTable {
  hire_id: string;
  project_id: string;
  /** The hired agent: (agent_owner, agent_id). agent_owner is null only for hires of agents deleted before migration 0015. */
  agent_owner: string | null;
  agent_id: string;
  /** active or released. */
  state: string;
  hired_by: string;
  request_id: string | null;
  create_time: number;
  release_time: number | null;
}
