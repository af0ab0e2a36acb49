/**
 * For gRPC and Connect callers: a call refused because the project's
 * credits are exhausted carries, in its PaymentRequired detail, the same
 * x402 PaymentRequired the top-up route sends in its PAYMENT-REQUIRED
 * header (amount: what the call needs, within the top-up bounds), and the
 * top-up URL in pay_with. Spend caps are not offered: credits do not raise a cap.
 * Neither are test-mode calls: a sandbox runs out of free credits, real money
 * cannot refill it (docs/test-mode.md).
 */
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { LimitReason, type PaymentRequired, PaymentRequiredSchema } from "../../gen/formstate/v1/errors_pb.js";
import type { X402Rail } from "./x402-topups.js";
import { toProto } from "./x402-wire.js";
import { parseAccountName } from "../names/names.js";
import { principalKey } from "../auth/principal.js";
import { callerEnvironment } from "../ledger/sandbox.js";

/** Adds the x402 offer to payment-required errors; a no-op when the rail is off. */
export function createX402OfferInterceptor(rail: () => X402Rail | undefined): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const r = rail();
      if (r && err instanceof ConnectError && callerEnvironment(req.contextValues.get(principalKey)) === "live") addOffer(r, err, new URL(req.url).origin);
      throw err;
    }
  };
}

/** Sets the x402 offer on the error's PaymentRequired detail, in place. */
export function addOffer(rail: X402Rail, err: ConnectError, origin: string): void {
  for (const d of err.details) {
    if (!("desc" in d) || d.desc.typeName !== PaymentRequiredSchema.typeName) continue;
    const detail = d.value as PaymentRequired;
    if (detail.reason !== LimitReason.CREDITS_EXHAUSTED || detail.x402) continue;
    const projectId = parseAccountName(detail.account);
    if (!projectId) continue;
    const amount = rail.topUpAmount(Number(detail.amountMicros));
    const offer = rail.offer(projectId, amount, origin, "credits exhausted: top up with an x402 payment");
    detail.x402 = toProto(offer);
    detail.payWith = [...(detail.payWith ?? []), offer.resource.url];
  }
}
