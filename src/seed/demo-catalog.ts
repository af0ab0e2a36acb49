/**
 * The development seed's catalog: a few priced models and a public agent in
 * the demo project, so the first calls in the README show real numbers
 * (prices, costs, an agent to hire). Idempotent: every create carries the
 * same request_id, so a restart, or several instances starting at once, get
 * the existing entries back instead of duplicates or errors.
 */
import { Role } from "../../gen/formstate/v1/access_pb.js";
import type { Agents } from "../catalog/agents.js";
import type { ModelFields, Models } from "../catalog/models.js";

const SEED_REQUEST = "formstate-dev-seed";

/** micro-USD per million tokens: input, output. */
export const DEMO_MODELS: Array<{ id: string; displayName: string; description: string; contextWindow: number; input: number; output: number }> = [
  { id: "demo-lab/fast", displayName: "Demo fast", description: "A small, cheap chat model (seeded in development).", contextWindow: 32_768, input: 150_000, output: 600_000 },
  { id: "demo-lab/smart", displayName: "Demo smart", description: "A large chat model (seeded in development).", contextWindow: 200_000, input: 3_000_000, output: 15_000_000 },
  { id: "demo-lab/embed", displayName: "Demo embeddings", description: "An embedding model: input tokens only (seeded in development).", contextWindow: 8_192, input: 20_000, output: 0 },
];

export const DEMO_AGENT = {
  id: "demo-lab-summarizer",
  displayName: "Demo summarizer",
  description: "Summarizes a document with demo-lab/fast: 2,000 micro-USD per run plus its tokens (seeded in development).",
  models: ["models/demo-lab/fast"],
  pricePerInvocation: 2_000,
};

/** Creates (or finds) the demo catalog in `projectId`, published by its admin `adminSubject`. */
export async function seedDemoCatalog(catalog: { models: Models; agents: Agents }, projectId: string, adminSubject: string): Promise<void> {
  const caller = { subject: adminSubject, projectId, role: Role.ADMIN };
  for (const m of DEMO_MODELS) {
    const fields: ModelFields = { displayName: m.displayName, description: m.description, contextWindow: m.contextWindow, inputPrice: m.input, outputPrice: m.output, status: "active", visibility: "public" };
    await catalog.models.create(caller, m.id, fields, SEED_REQUEST);
  }
  await catalog.agents.create(
    caller,
    DEMO_AGENT.id,
    { displayName: DEMO_AGENT.displayName, description: DEMO_AGENT.description, models: DEMO_AGENT.models, pricePerInvocation: DEMO_AGENT.pricePerInvocation, status: "active", visibility: "public", sharedWith: [] },
    SEED_REQUEST,
  );
}
