/** Domain happenings as AccountEvent messages for the event stream (src/events/event-stream.ts). */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type AccountEvent, AccountEventSchema } from "../../gen/formstate/v1/usage_service_pb.js";
import { alertName } from "../alerts/spend-alerts.js";
import type { FiredAlert } from "../alerts/spend-alerts.js";
import { accountName, childName, keyName } from "../names/names.js";

/** A spend alert's firing: the facts of its `spend_alert.triggered` webhook, under the same event id. */
export function spendAlertFiredEvent(f: FiredAlert): AccountEvent {
  const { rule } = f;
  return create(AccountEventSchema, {
    id: f.eventId,
    account: accountName(rule.project_id),
    createTime: timestampFromMs(f.time),
    payload: {
      case: "spendAlertFired",
      value: {
        spendAlert: alertName(rule.project_id, rule.rule_id),
        apiKey: rule.api_key_id ? keyName(rule.project_id, rule.api_key_id) : "",
        period: f.period,
        threshold: rule.threshold_percent > 0 ? { case: "thresholdPercent", value: rule.threshold_percent } : { case: "thresholdMicros", value: BigInt(rule.threshold_micros) },
        baseMicros: BigInt(f.base ?? 0),
        spentMicros: BigInt(f.spent),
        description: rule.description,
      },
    },
  });
}

/** Credits booked into an account (a grant or a purchase). */
export interface CreditsBooked {
  projectId: string;
  transactionId: string;
  amountMicros: bigint;
  balanceMicros: bigint;
  reason: string;
  time: number;
}

export function creditsAddedEvent(c: CreditsBooked): AccountEvent {
  return create(AccountEventSchema, {
    id: `evt_credits_${c.transactionId}`,
    account: accountName(c.projectId),
    createTime: timestampFromMs(c.time),
    payload: {
      case: "creditsAdded",
      value: { creditTransaction: childName(c.projectId, "creditTransactions", c.transactionId), amountMicros: c.amountMicros, balanceMicros: c.balanceMicros, reason: c.reason },
    },
  });
}
