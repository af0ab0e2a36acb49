/**
 * The payment-required refusal: money, not speed, stops a call (the
 * project's credits, a key's spend cap, a wallet token's budget). It is
 * FAILED_PRECONDITION with a `PaymentRequired` detail (how much to add, where
 * to pay), the `LimitExceeded` detail older clients read, and an ErrorInfo
 * reason; over plain HTTP (Connect unary JSON/binary, plain routes) the status
 * is 402. Rate limiting stays RESOURCE_EXHAUSTED / 429 with RetryInfo.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  LimitExceededSchema,
  LimitReason,
  PaymentRequiredSchema,
  type UpgradeOption,
  type X402PaymentRequired,
} from "../../gen/formstate/v1/errors_pb.js";
import { accountName } from "../names/names.js";

/**
 * The response header that marks a payment-required answer. The HTTP layer
 * turns a Connect unary error carrying it into status 402; gRPC callers see
 * it as trailer metadata. Its value is the reason (`credits_exhausted`, `spend_cap`).
 */
export const PAYMENT_REQUIRED_HEADER = "formstate-payment-required";

/** Where a caller can pay: buy credits or a plan. */
export const PAY_WITH_CHECKOUT = "formstate.v1.BillingService/CreateCheckoutSession";
/** Where a test-mode caller adds sandbox credits (docs/test-mode.md): never real money. */
export const PAY_WITH_SANDBOX_GRANT = "formstate.v1.BillingService/AddCredits";
/** Where a key's owner raises its spend cap. */
export const PAY_WITH_RAISE_CAP = "formstate.v1.ApiKeyService/UpdateApiKey";

export interface PaymentRequiredFacts {
  reason: LimitReason.CREDITS_EXHAUSTED | LimitReason.SPEND_CAP;
  /** The project that must pay. */
  projectId: string;
  /** What the refused call would have cost, micro-USD. */
  requestedMicros: number;
  /** The balance, or the cap's remaining room, micro-USD (may be negative). */
  availableMicros: number;
  /** The capped key or budget, for SPEND_CAP. */
  limitedResource?: string;
  /** For the LimitExceeded detail: the limit and its use (micro-USD). */
  limitMicros: number;
  usedMicros: number;
  upgrades?: UpgradeOption[];
  /** Test mode: the sandbox ran out; pay_with names the sandbox grant, never a purchase. */
  sandbox?: boolean;
  /** The x402 offer, when the x402 rail is configured (issue 18). */
  x402?: X402PaymentRequired;
  message: string;
}

/** The least a caller must add for a call of `requested` to pass with `available` left. */
export const amountToAdd = (requested: number, available: number) => Math.max(requested - available, 0);

/** FAILED_PRECONDITION + PaymentRequired (+ LimitExceeded for existing clients, + ErrorInfo). */
export function paymentRequired(f: PaymentRequiredFacts): ConnectError {
  const amount = amountToAdd(f.requestedMicros, f.availableMicros);
  const reasonName = f.reason === LimitReason.CREDITS_EXHAUSTED ? "credits_exhausted" : "spend_cap";
  const detail = create(PaymentRequiredSchema, {
    reason: f.reason,
    amountMicros: BigInt(amount),
    requestedMicros: BigInt(f.requestedMicros),
    availableMicros: BigInt(f.availableMicros),
    account: accountName(f.projectId),
    limitedResource: f.limitedResource ?? "",
    payWith: f.reason !== LimitReason.CREDITS_EXHAUSTED ? [PAY_WITH_RAISE_CAP] : f.sandbox ? [PAY_WITH_SANDBOX_GRANT] : [PAY_WITH_CHECKOUT],
    x402: f.x402,
  });
  const limit = create(LimitExceededSchema, {
    reason: f.reason,
    limit: BigInt(f.limitMicros),
    used: BigInt(f.usedMicros),
    requested: BigInt(f.requestedMicros),
    upgradeOptions: f.upgrades ?? [],
    creditsNeededMicros: f.reason === LimitReason.CREDITS_EXHAUSTED ? BigInt(amount) : 0n,
  });
  const info = create(ErrorInfoSchema, {
    reason: "PAYMENT_REQUIRED",
    domain: "formstate.dev",
    metadata: { limit: reasonName, amount_micros: String(amount), account: accountName(f.projectId) },
  });
  return new ConnectError(f.message, Code.FailedPrecondition, { [PAYMENT_REQUIRED_HEADER]: reasonName }, [
    { desc: PaymentRequiredSchema, value: detail },
    { desc: LimitExceededSchema, value: limit },
    { desc: ErrorInfoSchema, value: info },
  ]);
}

/** Whether an error is a payment-required refusal. */
export function isPaymentRequired(err: unknown): err is ConnectError {
  return err instanceof ConnectError && err.code === Code.FailedPrecondition && err.metadata.has(PAYMENT_REQUIRED_HEADER);
}
