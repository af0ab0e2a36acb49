/** BillingService over the wire. Without Stripe keys the Stripe-backed methods answer FAILED_PRECONDITION. */
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { type BillingService, type CreditTransaction, CreditTransactionKind, CreditTransactionSchema, PlanSchema } from "../../gen/formstate/v1/billing_service_pb.js";
import { ActorSchema } from "../../gen/formstate/v1/common_pb.js";
import { subscriptionStatusToWire } from "../wire/subscription-status.js";
import { callerOf } from "../auth/principal.js";
import { projectOf } from "../auth/tenancy.js";
import { exactInteger } from "../db/exact-integers.js";
import type { LedgerKind, LedgerRow } from "../ledger/ledger.js";
import { readEnvironment, wireEnvironment } from "../ledger/sandbox.js";
import type { Plan } from "../plans/plans.js";
import type { Billing } from "./billing.js";
import type { CheckoutItem } from "./checkout.js";
import type { ReceiptMethods } from "../receipts/receipt-service.js";
import { authorizationName, creditTransactionName, isKeyName, recordName } from "../names/names.js";

const kinds: Record<LedgerKind, CreditTransactionKind> = {
  grant: CreditTransactionKind.GRANT,
  purchase: CreditTransactionKind.PURCHASE,
  usage_debit: CreditTransactionKind.USAGE_DEBIT,
  refund: CreditTransactionKind.REFUND,
  adjustment: CreditTransactionKind.ADJUSTMENT,
  hold: CreditTransactionKind.HOLD,
  hold_release: CreditTransactionKind.HOLD_RELEASE,
  plan_credits: CreditTransactionKind.PLAN_CREDITS,
  dispute: CreditTransactionKind.DISPUTE,
  invoiced: CreditTransactionKind.INVOICED,
};
const kindNames = new Map(Object.entries(kinds).map(([k, v]) => [v, k as LedgerKind]));

export function toPlan(p: Plan, stripePriceId = "") {
  return create(PlanSchema, {
    tier: p.tier,
    id: p.id,
    displayName: p.displayName,
    monthlyPriceMicros: BigInt(p.monthlyPriceMicros),
    includedCreditsMicros: BigInt(p.includedCreditsMicros),
    agentSlots: { limit: BigInt(p.agentSlots ?? 0), unlimited: p.agentSlots === null },
    apiKeyLimit: { limit: BigInt(p.apiKeyLimit ?? 0), unlimited: p.apiKeyLimit === null },
    rateLimit: { requestsPerSecond: p.rateLimit.requestsPerSecond, burst: p.rateLimit.burst },
    overdraftAllowed: p.overdraftAllowed,
    stripePriceId,
  });
}

function toTransaction(r: LedgerRow): CreditTransaction {
  return create(CreditTransactionSchema, {
    name: creditTransactionName(r.project_id, r.tx_id),
    kind: kinds[r.kind as LedgerKind] ?? CreditTransactionKind.UNSPECIFIED,
    amountMicros: BigInt(r.amount_micros),
    balanceAfterMicros: BigInt(r.balance_after_micros),
    idempotencyKey: r.idempotency_key,
    description: r.description,
    usageRecord: r.usage_record_id ? recordName(r.project_id, r.usage_record_id) : "",
    authorization: r.authorization_id ? authorizationName(r.project_id, r.authorization_id) : "",
    actor: r.actor ? create(ActorSchema, { kind: isKeyName(r.actor) ? { case: "apiKey", value: r.actor } : { case: "userId", value: r.actor } }) : create(ActorSchema, { kind: { case: "system", value: "formstate" } }),
    createTime: timestampFromMs(r.create_time),
    environment: wireEnvironment(r.environment),
  });
}

/** BillingService but its receipt methods (src/receipts/) and publisher methods (src/marketplace/publisher-methods.ts). */
export function billingService(billing: Billing): Omit<ServiceImpl<typeof BillingService>, keyof ReceiptMethods | "getPublisherEarnings" | "linkPayoutAccount" | "listPayouts"> {
  return {
    listPlans() {
      return { plans: billing.plans().map((p) => toPlan(p, billing.priceIdOf(p))) };
    },
    async getSubscription(req, ctx) {
      const caller = callerOf(ctx);
      const s = await billing.subscription(caller, projectOf(ctx));
      return {
        subscription: {
          name: req.name,
          tier: s.plan.tier,
          status: subscriptionStatusToWire(s.row.subscription_status),
          currentPeriodStartTime: timestampFromMs(s.period.start),
          currentPeriodEndTime: timestampFromMs(s.period.end),
          cancelAtPeriodEnd: s.cancelAtPeriodEnd,
          stripeCustomerId: s.stripeCustomerId,
          stripeSubscriptionId: s.stripeSubscriptionId,
        },
      };
    },
    async createCheckoutSession(req, ctx) {
      const item: CheckoutItem = req.item.case === "plan" ? { kind: "plan", tier: req.item.value } : { kind: "credits", micros: Number(req.item.value) };
      const session = await billing.createCheckout(callerOf(ctx), projectOf(ctx), item, req.successUrl, req.cancelUrl);
      return { sessionId: session.sessionId, url: session.url, expireTime: timestampFromMs(session.expireTime) };
    },
    async processCheckout(req, ctx) {
      const done = await billing.processCheckout(callerOf(ctx), projectOf(ctx), req.sessionId);
      ctx.responseHeader.set("x-credit-balance-micros", String(done.balance));
      return { grantedCreditsMicros: BigInt(done.grantedMicros), tier: done.tier, alreadyProcessed: done.alreadyProcessed, balanceMicros: BigInt(done.balance) };
    },
    async createPortalSession(req, ctx) {
      return { url: await billing.createPortal(callerOf(ctx), projectOf(ctx), req.returnUrl) };
    },
    async addCredits(req, ctx) {
      const { row, balance } = await billing.addCredits(callerOf(ctx), projectOf(ctx), exactInteger(req.amountMicros), req.reason, req.requestId);
      ctx.responseHeader.set("x-credit-balance-micros", String(balance));
      return { creditTransaction: toTransaction(row), balanceMicros: BigInt(balance) };
    },
    async listCreditTransactions(req, ctx) {
      const caller = callerOf(ctx);
      const page = await billing.transactions(
        caller,
        projectOf(ctx),
        {
          environment: readEnvironment(caller, req.environment),
          kinds: req.kinds.map((k) => kindNames.get(k)!).filter(Boolean),
          startTime: req.startTime ? timestampDate(req.startTime).getTime() : undefined,
          endTime: req.endTime ? timestampDate(req.endTime).getTime() : undefined,
        },
        req.pageSize,
        req.pageToken,
      );
      return { creditTransactions: page.items.map(toTransaction), nextPageToken: page.nextPageToken };
    },
  };
}
