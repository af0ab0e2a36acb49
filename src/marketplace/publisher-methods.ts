/**
 * The publisher methods of BillingService over the wire: earnings, the
 * payout account, payouts. Joined with the rest of BillingService in routes.ts.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type BillingService,
  type EarningsTotal as WireTotal,
  EarningsTotalSchema,
  type Payout,
  PayoutSchema,
  PayoutState,
  ResourceEarningsSchema,
} from "../../gen/formstate/v1/billing_service_pb.js";
import { callerOf } from "../auth/principal.js";
import { projectOf } from "../auth/tenancy.js";
import { payoutName } from "../names/names.js";
import type { EarningsTotal } from "./earnings-report.js";
import type { Marketplace } from "./marketplace.js";
import type { PayoutRow } from "./payouts.js";

const states: Record<string, PayoutState> = { pending: PayoutState.PENDING, paid: PayoutState.PAID, failed: PayoutState.FAILED };

function toTotal(t: EarningsTotal): WireTotal {
  return create(EarningsTotalSchema, {
    grossMicros: BigInt(t.gross),
    earningsMicros: BigInt(t.earnings),
    platformFeeMicros: BigInt(t.platformFee),
    clawbackMicros: BigInt(t.clawback),
    usageCount: BigInt(t.usageCount),
  });
}

export function toPayout(r: PayoutRow): Payout {
  return create(PayoutSchema, {
    name: payoutName(r.publisher_project, r.payout_id),
    amountMicros: BigInt(r.amount_micros),
    state: states[r.status] ?? PayoutState.UNSPECIFIED,
    stripeAccountId: r.stripe_account_id,
    stripeTransferId: r.stripe_transfer_id ?? "",
    attempts: r.attempts,
    lastError: r.last_error ?? "",
    createTime: timestampFromMs(Number(r.create_time)),
    paidTime: r.paid_time === null ? undefined : timestampFromMs(Number(r.paid_time)),
  });
}

/** The BillingService methods this module serves. */
export type PublisherMethods = Pick<ServiceImpl<typeof BillingService>, "getPublisherEarnings" | "linkPayoutAccount" | "listPayouts">;

export function publisherMethods(marketplace: Marketplace): PublisherMethods {
  return {
    async getPublisherEarnings(req, ctx) {
      const start = req.startTime ? timestampMs(req.startTime) : undefined;
      const end = req.endTime ? timestampMs(req.endTime) : undefined;
      const r = await marketplace.earnings(callerOf(ctx), projectOf(ctx), start, end);
      return {
        total: toTotal(r.total),
        resources: r.resources.map((l) => create(ResourceEarningsSchema, { resource: l.resource, total: toTotal(l.total) })),
        paidOutMicros: BigInt(r.paidOut),
        balanceMicros: BigInt(r.balance),
        stripeAccountId: r.stripeAccountId,
      };
    },
    async linkPayoutAccount(req, ctx) {
      const link = await marketplace.linkAccount(callerOf(ctx), projectOf(ctx), req.refreshUrl, req.returnUrl);
      return { stripeAccountId: link.stripeAccountId, onboardingUrl: link.url, onboardingUrlExpireTime: timestampFromMs(link.expiresAt) };
    },
    async listPayouts(req, ctx) {
      const page = await marketplace.listPayouts(callerOf(ctx), projectOf(ctx), req.pageSize, req.pageToken);
      return { payouts: page.items.map(toPayout), nextPageToken: page.nextPageToken };
    },
  };
}
