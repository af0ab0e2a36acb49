/**
 * Plans are configuration, not code: these defaults ship, and a deployment
 * replaces them with a JSON file named by FORMSTATE_PLANS_FILE.
 */
import { readFileSync } from "node:fs";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";

export interface Plan {
  tier: PlanTier;
  id: "free" | "pro" | "enterprise";
  displayName: string;
  monthlyPriceMicros: number;
  includedCreditsMicros: number;
  /** null = unlimited. */
  agentSlots: number | null;
  /** null = unlimited. */
  apiKeyLimit: number | null;
  rateLimit: { requestsPerSecond: number; burst: number };
  overdraftAllowed: boolean;
  /** Concurrent sign-in sessions per user; the oldest is revoked past it. null or absent = unlimited. */
  sessionLimit?: number | null;
  /** Test-mode sandbox credits the project is topped up to each month (docs/test-mode.md); absent = 100 USD. */
  sandboxCreditsMicros?: number;
}

export const defaultPlans: Plan[] = [
  {
    tier: PlanTier.FREE,
    id: "free",
    displayName: "Free",
    monthlyPriceMicros: 0,
    includedCreditsMicros: 5_000_000,
    agentSlots: 1,
    apiKeyLimit: 2,
    rateLimit: { requestsPerSecond: 10, burst: 20 },
    overdraftAllowed: false,
  },
  {
    tier: PlanTier.PRO,
    id: "pro",
    displayName: "Pro",
    monthlyPriceMicros: 49_000_000,
    includedCreditsMicros: 50_000_000,
    agentSlots: 5,
    apiKeyLimit: 10,
    rateLimit: { requestsPerSecond: 100, burst: 200 },
    overdraftAllowed: false,
  },
  {
    tier: PlanTier.ENTERPRISE,
    id: "enterprise",
    displayName: "Enterprise",
    monthlyPriceMicros: 999_000_000,
    includedCreditsMicros: 1_000_000_000,
    agentSlots: null,
    apiKeyLimit: null,
    rateLimit: { requestsPerSecond: 1000, burst: 2000 },
    overdraftAllowed: true,
  },
];

/** The plan catalogue a deployment runs with. */
export class Plans {
  constructor(readonly all: readonly Plan[] = defaultPlans) {}

  /** The plan with a stored id; unknown ids fall back to Free so limits never vanish. */
  byId(id: string): Plan {
    return this.all.find((p) => p.id === id) ?? this.all[0];
  }

  /** Plans ordered above `current` that satisfy `allows`, cheapest first. */
  upgradesFrom(current: Plan, allows: (p: Plan) => boolean): Plan[] {
    return this.all.filter((p) => p.tier > current.tier && allows(p)).sort((a, b) => a.monthlyPriceMicros - b.monthlyPriceMicros);
  }
}

/** Loads plans from a JSON file (an array shaped like defaultPlans, tier as "free" | "pro" | "enterprise"). */
export function loadPlans(file: string | undefined): Plans {
  if (!file) return new Plans();
  const raw = JSON.parse(readFileSync(file, "utf8")) as Array<Omit<Plan, "tier">>;
  const tiers: Record<string, PlanTier> = { free: PlanTier.FREE, pro: PlanTier.PRO, enterprise: PlanTier.ENTERPRISE };
  return new Plans(
    raw.map((p) => {
      const tier = tiers[p.id];
      if (tier === undefined) throw new Error(`plans file: unknown plan id ${JSON.stringify(p.id)}`);
      return { ...p, tier };
    }),
  );
}
