/** Enum values from the generated types as words a person reads ("PLAN_TIER_PRO" -> "Pro"). */
import { ApiKeyStatus } from "../gen/formstate/v1/api_key_service_pb.js";
import { Scope } from "../gen/formstate/v1/access_pb.js";
import { PlanTier, SubscriptionStatus } from "../gen/formstate/v1/common_pb.js";

function word(name: string | undefined): string {
  if (!name) return "unknown";
  return name.charAt(0) + name.slice(1).toLowerCase().replace(/_/g, " ");
}

export const planLabel = (t: PlanTier) => word(PlanTier[t]);
export const subscriptionLabel = (s: SubscriptionStatus) => word(SubscriptionStatus[s]);
export const keyStatusLabel = (s: ApiKeyStatus) => word(ApiKeyStatus[s]).toLowerCase();
export const scopeLabel = (s: Scope) => word(Scope[s]).toLowerCase();
