/**
 * The refusal when a plan's count limit (API keys, agent slots) is reached:
 * a message naming the limit and the plans that allow more, and a
 * LimitExceeded detail with the same facts for clients to act on.
 */
import { create } from "@bufbuild/protobuf";
import { type Code, ConnectError } from "@connectrpc/connect";
import { LimitExceededSchema, type LimitReason, UpgradeOptionSchema } from "../../gen/formstate/v1/errors_pb.js";
import type { Plan, Plans } from "./plans.js";

export interface PlanLimit {
  reason: LimitReason;
  code: Code;
  /** The limit on a plan; null = unlimited. */
  limitOf(plan: Plan): number | null;
  /** What is counted, for the message: "API keys", "hired agents". */
  noun: string;
  /** How the used ones are described: "are in use", "are hired". */
  usedVerb: string;
  /** What frees one: "revoke one", "release one". */
  remedy: string;
}

export function planLimitError(plans: Plans, plan: Plan, used: number, l: PlanLimit): ConnectError {
  const limit = l.limitOf(plan);
  const upgrades = plans.upgradesFrom(plan, (p) => {
    const pl = l.limitOf(p);
    return pl === null || pl > used;
  });
  const detail = create(LimitExceededSchema, {
    reason: l.reason,
    limit: BigInt(limit ?? 0),
    used: BigInt(used),
    requested: 1n,
    upgradeOptions: upgrades.map((p) => create(UpgradeOptionSchema, { tier: p.tier, limit: BigInt(l.limitOf(p) ?? 0), unlimited: l.limitOf(p) === null })),
  });
  return new ConnectError(
    `the ${plan.displayName} plan allows ${limit} ${l.noun} and ${used} ${l.usedVerb}; ${l.remedy} or upgrade (${upgrades.map((p) => p.displayName).join(", ") || "no larger plan"})`,
    l.code,
    undefined,
    [{ desc: LimitExceededSchema, value: detail }],
  );
}
