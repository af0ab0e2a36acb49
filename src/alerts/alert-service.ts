/** The spend-alert methods of UsageService over the wire. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { type AlertDelivery, AlertDeliverySchema, AlertDeliveryState, type SpendAlert, SpendAlertSchema, type UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { callerOf } from "../auth/principal.js";
import { childOf, projectOf } from "../auth/tenancy.js";
import { callerEnvironment } from "../ledger/sandbox.js";
import { keyName } from "../names/names.js";
import { type AlertRuleRow, type DeliveryRow, type SpendAlerts, alertName, deliveryName } from "./spend-alerts.js";

/** The UsageService methods this module serves. */
export type AlertMethods = Pick<ServiceImpl<typeof UsageService>, "createSpendAlert" | "listSpendAlerts" | "deleteSpendAlert" | "listAlertDeliveries">;

const STATES: Record<string, AlertDeliveryState> = {
  pending: AlertDeliveryState.PENDING,
  delivered: AlertDeliveryState.DELIVERED,
  failed: AlertDeliveryState.FAILED,
};

export function toSpendAlert(r: AlertRuleRow): SpendAlert {
  return create(SpendAlertSchema, {
    name: alertName(r.project_id, r.rule_id),
    apiKey: r.api_key_id ? keyName(r.project_id, r.api_key_id) : "",
    threshold: r.threshold_percent > 0 ? { case: "thresholdPercent", value: r.threshold_percent } : { case: "thresholdMicros", value: BigInt(r.threshold_micros) },
    endpointUrl: r.endpoint_url,
    description: r.description,
    createTime: timestampFromMs(Number(r.create_time)),
  });
}

export function toAlertDelivery(r: DeliveryRow): AlertDelivery {
  return create(AlertDeliverySchema, {
    name: deliveryName(r.project_id, r.delivery_id),
    spendAlert: alertName(r.project_id, r.rule_id),
    eventType: r.event_type,
    endpointUrl: r.endpoint_url,
    state: STATES[r.state] ?? AlertDeliveryState.UNSPECIFIED,
    attempts: r.attempts,
    lastStatusCode: r.last_status ?? 0,
    lastError: r.last_error,
    payload: r.payload,
    createTime: timestampFromMs(Number(r.create_time)),
    deliverTime: r.deliver_time === null ? undefined : timestampFromMs(Number(r.deliver_time)),
    nextAttemptTime: r.state === "pending" ? timestampFromMs(Number(r.next_attempt_time)) : undefined,
  });
}

export function alertMethods(alerts: SpendAlerts): AlertMethods {
  return {
    async createSpendAlert(req, ctx) {
      const a = req.spendAlert!;
      const { rule, secret } = await alerts.create(projectOf(ctx), {
        apiKey: a.apiKey || undefined,
        thresholdMicros: a.threshold.case === "thresholdMicros" ? Number(a.threshold.value) : undefined,
        thresholdPercent: a.threshold.case === "thresholdPercent" ? a.threshold.value : undefined,
        endpointUrl: a.endpointUrl,
        description: a.description,
      });
      return { spendAlert: toSpendAlert(rule), signingSecret: secret };
    },
    async listSpendAlerts(req, ctx) {
      const page = await alerts.list(projectOf(ctx), req.pageSize, req.pageToken);
      return { spendAlerts: page.items.map(toSpendAlert), nextPageToken: page.nextPageToken };
    },
    async deleteSpendAlert(req, ctx) {
      await alerts.delete(projectOf(ctx), childOf(ctx, "spendAlerts").id);
      return {};
    },
    async listAlertDeliveries(req, ctx) {
      // A live project's alerts are about live money: a test key of it reads an empty log (its mode has none, docs/test-mode.md).
      const caller = callerOf(ctx);
      if (callerEnvironment(caller) === "test" && !caller.testProject) return { alertDeliveries: [], nextPageToken: "" };
      const page = await alerts.deliveries(projectOf(ctx), req.pageSize, req.pageToken);
      return { alertDeliveries: page.items.map(toAlertDelivery), nextPageToken: page.nextPageToken };
    },
  };
}
