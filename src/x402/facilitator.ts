/**
 * An x402 facilitator over HTTP: `POST /verify` and `POST /settle`, each with
 * `{ x402Version, paymentPayload, paymentRequirements }`. A facilitator that
 * cannot be reached, times out, answers 5xx or answers something that is not
 * its JSON is unavailable (the caller answers UNAVAILABLE and credits
 * nothing); a clear "invalid" or "failed" answer is the payment's fault.
 */
import type { PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse } from "./x402-wire.js";
import { X402_VERSION } from "./x402-wire.js";

/** The facilitator could not give an answer; nothing about the payment is known. */
export class FacilitatorUnavailable extends Error {
  override name = "FacilitatorUnavailable";
}

export interface Facilitator {
  verify(payload: PaymentPayload, requirements: PaymentRequirements): Promise<VerifyResponse>;
  settle(payload: PaymentPayload, requirements: PaymentRequirements): Promise<SettleResponse>;
}

/** A facilitator at `baseUrl`, each request bounded by `timeoutMs`. */
export function httpFacilitator(baseUrl: string, timeoutMs: number): Facilitator {
  async function post(path: string, payload: PaymentPayload, requirements: PaymentRequirements): Promise<Record<string, unknown>> {
    let res: Response;
    try {
      res = await fetch(`${baseUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ x402Version: X402_VERSION, paymentPayload: payload, paymentRequirements: requirements }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new FacilitatorUnavailable(`facilitator ${path} unreachable: ${(err as Error).name}`);
    }
    if (res.status >= 500) throw new FacilitatorUnavailable(`facilitator ${path} answered ${res.status}`);
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new FacilitatorUnavailable(`facilitator ${path} answered ${res.status} without JSON`);
    }
    if (typeof body !== "object" || body === null) throw new FacilitatorUnavailable(`facilitator ${path} answered ${res.status} with no object`);
    return body as Record<string, unknown>;
  }
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return {
    async verify(payload, requirements) {
      const b = await post("/verify", payload, requirements);
      if (typeof b.isValid !== "boolean") throw new FacilitatorUnavailable("facilitator /verify answered without isValid");
      return { isValid: b.isValid, invalidReason: str(b.invalidReason), payer: str(b.payer) };
    },
    async settle(payload, requirements) {
      const b = await post("/settle", payload, requirements);
      if (typeof b.success !== "boolean") throw new FacilitatorUnavailable("facilitator /settle answered without success");
      return { success: b.success, errorReason: str(b.errorReason), payer: str(b.payer), transaction: str(b.transaction) ?? "", network: str(b.network) ?? requirements.network };
    },
  };
}
