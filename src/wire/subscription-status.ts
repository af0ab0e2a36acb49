import { SubscriptionStatus } from "../../gen/formstate/v1/common_pb.js";

/** Stored subscription states (Stripe's names) on the wire. */
export function subscriptionStatusToWire(stored: string): SubscriptionStatus {
  switch (stored) {
    case "none":
      return SubscriptionStatus.NONE;
    case "active":
      return SubscriptionStatus.ACTIVE;
    case "trialing":
      return SubscriptionStatus.TRIALING;
    case "past_due":
      return SubscriptionStatus.PAST_DUE;
    case "canceled":
      return SubscriptionStatus.CANCELED;
    case "unpaid":
      return SubscriptionStatus.UNPAID;
    default:
      return SubscriptionStatus.UNSPECIFIED;
  }
}
