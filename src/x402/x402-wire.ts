/**
 * x402 version 2 on the wire: the JSON objects the HTTP transport carries
 * base64-encoded in the `PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE` and
 * `PAYMENT-RESPONSE` headers, and the same PaymentRequired as our proto
 * message for the gRPC/Connect error detail.
 */
import { type JsonObject, create } from "@bufbuild/protobuf";
import { type X402PaymentRequired as X402PaymentRequiredProto, X402PaymentRequiredSchema, X402PaymentRequirementsSchema, X402ResourceSchema } from "../../gen/formstate/v1/errors_pb.js";

export const X402_VERSION = 2;
/** Server → client: what to pay (on a 402). */
export const PAYMENT_REQUIRED = "payment-required";
/** Client → server: the signed payment. */
export const PAYMENT_SIGNATURE = "payment-signature";
/** Server → client: the settlement. */
export const PAYMENT_RESPONSE = "payment-response";

/** One accepted way to pay. */
export interface PaymentRequirements {
  scheme: string;
  network: string;
  /** Atomic units of the asset, decimal string. */
  amount: string;
  asset: string;
  payTo: string;
  maxTimeoutSeconds: number;
  extra?: Record<string, unknown>;
}

export interface ResourceInfo {
  url: string;
  description: string;
  mimeType: string;
}

export interface PaymentRequired {
  x402Version: number;
  error?: string;
  resource: ResourceInfo;
  accepts: PaymentRequirements[];
}

/** What a client sends in PAYMENT-SIGNATURE. */
export interface PaymentPayload {
  x402Version: number;
  resource?: ResourceInfo;
  accepted: PaymentRequirements;
  payload: Record<string, unknown>;
  extensions?: Record<string, unknown>;
}

/** A facilitator's /settle answer, and what PAYMENT-RESPONSE carries. */
export interface SettleResponse {
  success: boolean;
  errorReason?: string;
  payer?: string;
  transaction: string;
  network: string;
}

/** A facilitator's /verify answer. */
export interface VerifyResponse {
  isValid: boolean;
  invalidReason?: string;
  payer?: string;
}

/** Base64 of the JSON of a header object. */
export const encodeHeader = (value: unknown): string => Buffer.from(JSON.stringify(value), "utf8").toString("base64");

/** Decodes a header object; undefined when it is not base64 JSON of an object. */
export function decodeHeader(value: string): Record<string, unknown> | undefined {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(value.trim())) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(value.trim(), "base64").toString("utf8"));
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Checks the shape of a decoded PAYMENT-SIGNATURE; returns a reason when it is not a v2 PaymentPayload. */
export function paymentPayloadProblem(v: Record<string, unknown>): string | undefined {
  if (v.x402Version !== X402_VERSION) return "x402Version must be 2";
  const a = v.accepted as Record<string, unknown> | undefined;
  if (typeof a !== "object" || a === null) return "accepted is missing";
  for (const f of ["scheme", "network", "amount", "asset", "payTo"]) if (typeof a[f] !== "string") return `accepted.${f} must be a string`;
  if (typeof v.payload !== "object" || v.payload === null || Array.isArray(v.payload)) return "payload must be an object";
  return undefined;
}

/** micro-USD → atomic units of an asset with `decimals` (≥ 6) decimals. */
export const microsToAtomic = (micros: number, decimals: number): string => (BigInt(micros) * 10n ** BigInt(decimals - 6)).toString();

/** Atomic units → micro-USD; undefined unless it is a whole number of micro-USD. */
export function atomicToMicros(atomic: string, decimals: number): number | undefined {
  if (!/^[0-9]{1,40}$/.test(atomic)) return undefined;
  const unit = 10n ** BigInt(decimals - 6);
  const n = BigInt(atomic);
  if (n % unit !== 0n) return undefined;
  const micros = n / unit;
  return micros <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(micros) : undefined;
}

/** The same PaymentRequired as the proto message the gRPC/Connect error detail carries. */
export function toProto(p: PaymentRequired): X402PaymentRequiredProto {
  return create(X402PaymentRequiredSchema, {
    x402Version: p.x402Version,
    error: p.error ?? "",
    resource: create(X402ResourceSchema, p.resource),
    accepts: p.accepts.map((a) =>
      create(X402PaymentRequirementsSchema, {
        scheme: a.scheme,
        network: a.network,
        amount: a.amount,
        asset: a.asset,
        payTo: a.payTo,
        maxTimeoutSeconds: a.maxTimeoutSeconds,
        extra: a.extra as JsonObject | undefined,
      }),
    ),
  });
}
