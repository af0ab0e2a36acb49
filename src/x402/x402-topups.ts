/**
 * x402 as a funding rail: a project's credits are topped up by an x402
 * payment, verified and settled by a facilitator, and credited to the
 * ledger exactly once per settlement.
 *
 * Exactly once: the payment payload is claimed first (its hash is unique),
 * so a replay or a concurrent duplicate is refused before the facilitator
 * is asked; the credit is booked with the claim's settlement in one
 * transaction, keyed by the settlement transaction (also unique), so the
 * same settlement can never credit twice. A facilitator that cannot answer
 * leaves nothing credited: before /settle the claim is dropped (the payload
 * may be sent again), during /settle the claim becomes `unknown` and the
 * same payload may be retried (the asset's authorization nonce makes a
 * second on-chain transfer impossible, and the credit key makes a second
 * credit impossible).
 */
import { createHash } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Clock } from "../clock.js";
import type { Database } from "../db/database.js";
import { invalidArgument, notFound, withReason } from "../errors.js";
import { newId } from "../ids.js";
import { accountName, creditTransactionName } from "../names/names.js";
import * as ledger from "../ledger/ledger.js";
import type { Logger } from "../logger.js";
import { type Facilitator, FacilitatorUnavailable } from "./facilitator.js";
import type { X402Config } from "./x402-config.js";
import {
  type PaymentPayload,
  type PaymentRequired,
  type PaymentRequirements,
  type SettleResponse,
  X402_VERSION,
  decodeHeader,
  microsToAtomic,
  paymentPayloadProblem,
} from "./x402-wire.js";

/** The plain HTTP route of top-ups: `POST /x402/topup/{project}?amount={micro-USD}`. */
export const TOPUP_PATH = "/x402/topup/";

/** A refused payment the client can fix by paying again: HTTP 402 with a fresh challenge. */
export class PaymentRefused extends Error {
  override name = "PaymentRefused";
  constructor(
    message: string,
    readonly reason: string,
    readonly settlement?: SettleResponse,
  ) {
    super(message);
  }
}

export interface TopUpResult {
  amountMicros: number;
  balanceMicros: number;
  creditTransaction: string;
  settlement: SettleResponse;
}

export interface X402Deps {
  database: Database;
  clock: Clock;
  log: Logger;
  config: X402Config;
  facilitator: Facilitator;
}

/** sha256 of JSON with object keys sorted, so one payload has one hash however its fields are ordered. */
export function canonicalHash(value: unknown): string {
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])])) : v;
  return createHash("sha256").update(JSON.stringify(canon(value))).digest("hex");
}

export class X402Rail {
  constructor(private readonly deps: X402Deps) {}

  get config(): X402Config {
    return this.deps.config;
  }

  /** The top-up amount to offer when a call needs `micros` more: within the configured bounds. */
  topUpAmount(micros: number): number {
    return Math.min(Math.max(micros, this.config.minTopUpMicros), this.config.maxTopUpMicros);
  }

  /** The payment requirements of a top-up of `amountMicros`. */
  requirements(amountMicros: number): PaymentRequirements {
    const c = this.config;
    return {
      scheme: "exact",
      network: c.network,
      amount: microsToAtomic(amountMicros, c.assetDecimals),
      asset: c.asset,
      payTo: c.payTo,
      maxTimeoutSeconds: c.maxTimeoutSeconds,
      extra: { name: c.assetName, version: c.assetVersion },
    };
  }

  /** The URL a top-up is paid at; `origin` is the caller's when no public URL is configured. */
  topUpUrl(projectId: string, amountMicros: number, origin: string): string {
    return `${this.config.publicUrl ?? origin}${TOPUP_PATH}${encodeURIComponent(projectId)}?amount=${amountMicros}`;
  }

  /** The x402 PaymentRequired of a top-up (the PAYMENT-REQUIRED header, and the gRPC error detail). */
  offer(projectId: string, amountMicros: number, origin: string, error = "PAYMENT-SIGNATURE header is required"): PaymentRequired {
    return {
      x402Version: X402_VERSION,
      error,
      resource: {
        url: this.topUpUrl(projectId, amountMicros, origin),
        description: `Formstate credits: ${amountMicros} micro-USD for ${accountName(projectId)}`,
        mimeType: "application/json",
      },
      accepts: [this.requirements(amountMicros)],
    };
  }

  /** Checks a top-up amount (micro-USD) from the query string. */
  parseAmount(raw: string | null): number {
    const { minTopUpMicros: min, maxTopUpMicros: max } = this.config;
    if (raw === null || !/^[1-9][0-9]{0,15}$/.test(raw)) throw invalidArgument("amount", `must be a whole number of micro-USD from ${min} to ${max}`);
    const n = Number(raw);
    if (n < min || n > max) throw invalidArgument("amount", `must be from ${min} to ${max} micro-USD`);
    return n;
  }

  /** Whether the project has an account (top-ups go only to accounts that exist). */
  async requireAccount(projectId: string): Promise<void> {
    const row = await this.deps.database.db.selectFrom("account").select("project_id").where("project_id", "=", projectId).executeTakeFirst();
    if (!row) throw notFound(`account "${accountName(projectId)}"`);
  }

  /**
   * Verifies, settles and credits the payment in a PAYMENT-SIGNATURE header.
   * Throws INVALID_ARGUMENT for a malformed header, PaymentRefused for a
   * payment that does not match the offer or that the facilitator refuses,
   * ALREADY_EXISTS for a payment used before, UNAVAILABLE when the
   * facilitator cannot answer (nothing is credited then).
   */
  async pay(projectId: string, amountMicros: number, header: string, actor: string): Promise<TopUpResult> {
    const decoded = decodeHeader(header);
    if (!decoded) throw invalidArgument("PAYMENT-SIGNATURE", "must be base64-encoded JSON of an x402 PaymentPayload");
    const problem = paymentPayloadProblem(decoded);
    if (problem) throw invalidArgument("PAYMENT-SIGNATURE", problem);
    const payload = decoded as unknown as PaymentPayload;
    const required = this.requirements(amountMicros);
    const mismatch = this.mismatch(payload.accepted, required);
    if (mismatch) throw new PaymentRefused(`the payment does not match the offer: ${mismatch}`, "invalid_payment_requirements");
    // The facilitator is sent our requirements, not the client's copy of them.
    const hash = canonicalHash(payload);
    const claim = await this.claim(projectId, hash, amountMicros);
    let verified;
    try {
      verified = await this.deps.facilitator.verify(payload, required);
    } catch (err) {
      await this.release(claim);
      throw this.unavailable(err);
    }
    if (!verified.isValid) {
      await this.release(claim);
      throw new PaymentRefused(`the facilitator refused the payment: ${verified.invalidReason ?? "invalid"}`, verified.invalidReason ?? "invalid_payload");
    }
    let settled: SettleResponse;
    try {
      settled = await this.deps.facilitator.settle(payload, required);
    } catch (err) {
      await this.markUnknown(claim.paymentId, verified.payer);
      throw this.unavailable(err);
    }
    if (!settled.success || !settled.transaction) {
      await this.release(claim);
      throw new PaymentRefused(`settlement failed: ${settled.errorReason ?? "no transaction"}`, settled.errorReason ?? "settlement_failed", settled);
    }
    return this.credit(projectId, claim.paymentId, amountMicros, settled, actor);
  }

  /** Why accepted requirements differ from ours; undefined when they match. */
  private mismatch(a: PaymentRequirements, r: PaymentRequirements): string | undefined {
    if (a.scheme !== r.scheme) return `scheme ${a.scheme}, expected ${r.scheme}`;
    if (a.network !== r.network) return `network ${a.network}, expected ${r.network}`;
    // EVM addresses are case-insensitive (the case is only a checksum); other chains' are exact.
    const same = (x: string, y: string) => (r.network.startsWith("eip155:") ? x.toLowerCase() === y.toLowerCase() : x === y);
    if (!same(a.asset, r.asset)) return "asset differs";
    if (!same(a.payTo, r.payTo)) return "payTo differs";
    if (a.amount !== r.amount) return `amount ${a.amount}, expected ${r.amount}`;
    return undefined;
  }

  /** Claims a payload: refused when used before or in flight; an `unknown` one is taken again. */
  private async claim(projectId: string, hash: string, amountMicros: number): Promise<{ paymentId: string; wasUnknown: boolean }> {
    const now = this.deps.clock.now();
    return this.deps.database.transaction(async (tx) => {
      const account = await tx.selectFrom("account").select("project_id").where("project_id", "=", projectId).executeTakeFirst();
      if (!account) throw notFound(`account "${accountName(projectId)}"`);
      const seen = await tx.selectFrom("x402_payment").selectAll().where("payload_hash", "=", hash).executeTakeFirst();
      if (seen?.state === "settled") throw withReason(Code.AlreadyExists, "this payment was already used", "PAYMENT_ALREADY_USED");
      if (seen?.state === "pending") throw withReason(Code.AlreadyExists, "this payment is being processed", "PAYMENT_IN_FLIGHT");
      if (seen) {
        if (seen.project_id !== projectId || Number(seen.amount_micros) !== amountMicros) throw withReason(Code.AlreadyExists, "this payment was already used", "PAYMENT_ALREADY_USED");
        await tx.updateTable("x402_payment").set({ state: "pending", update_time: now }).where("payment_id", "=", seen.payment_id).execute();
        return { paymentId: seen.payment_id, wasUnknown: true };
      }
      const paymentId = newId();
      await tx
        .insertInto("x402_payment")
        .values({ payment_id: paymentId, project_id: projectId, payload_hash: hash, state: "pending", amount_micros: amountMicros, network: this.config.network, payer: "", transaction_hash: null, credit_tx_id: null, create_time: now, update_time: now })
        .execute();
      return { paymentId, wasUnknown: false };
    });
  }

  /** Gives a claim back: a fresh one is dropped (the payload may come again); a retried `unknown` one stays unknown. */
  private async release(claim: { paymentId: string; wasUnknown: boolean }): Promise<void> {
    await this.deps.database.transaction(async (tx) => {
      if (claim.wasUnknown) await tx.updateTable("x402_payment").set({ state: "unknown", update_time: this.deps.clock.now() }).where("payment_id", "=", claim.paymentId).where("state", "=", "pending").execute();
      else await tx.deleteFrom("x402_payment").where("payment_id", "=", claim.paymentId).where("state", "=", "pending").execute();
    });
  }

  private async markUnknown(paymentId: string, payer?: string): Promise<void> {
    await this.deps.database.transaction((tx) =>
      tx.updateTable("x402_payment").set({ state: "unknown", payer: payer ?? "", update_time: this.deps.clock.now() }).where("payment_id", "=", paymentId).execute(),
    );
  }

  /** Books the purchase and marks the claim settled, in one transaction; a settlement credited before is refused. */
  private async credit(projectId: string, paymentId: string, amountMicros: number, settled: SettleResponse, actor: string): Promise<TopUpResult> {
    const now = this.deps.clock.now();
    const network = settled.network || this.config.network;
    return this.deps.database.transaction(async (tx) => {
      const other = await tx.selectFrom("x402_payment").select("payment_id").where("network", "=", network).where("transaction_hash", "=", settled.transaction).executeTakeFirst();
      if (other && other.payment_id !== paymentId) {
        await tx.deleteFrom("x402_payment").where("payment_id", "=", paymentId).execute();
        throw withReason(Code.AlreadyExists, "this settlement was already credited", "PAYMENT_ALREADY_USED");
      }
      const { row } = await ledger.book(
        tx,
        {
          projectId,
          kind: "purchase",
          amountMicros,
          idempotencyKey: `x402:${network}:${settled.transaction}`,
          description: `x402 top-up ${settled.transaction} on ${network}${settled.payer ? ` from ${settled.payer}` : ""}`,
          actor,
        },
        now,
      );
      await tx
        .updateTable("x402_payment")
        .set({ state: "settled", network, payer: settled.payer ?? "", transaction_hash: settled.transaction, credit_tx_id: row.tx_id, update_time: now })
        .where("payment_id", "=", paymentId)
        .execute();
      this.deps.log.info({ projectId, amountMicros, transaction: settled.transaction, network }, "x402 top-up credited");
      return { amountMicros, balanceMicros: Number(row.balance_after_micros), creditTransaction: creditTransactionName(projectId, row.tx_id), settlement: { ...settled, network } };
    }, { scope: projectId });
  }

  private unavailable(err: unknown): ConnectError {
    if (!(err instanceof FacilitatorUnavailable)) throw err;
    this.deps.log.warn({ err: err.message }, "x402 facilitator unavailable; nothing credited");
    return withReason(Code.Unavailable, "the payment facilitator is unavailable; nothing was charged to the account, retry later", "FACILITATOR_UNAVAILABLE");
  }
}
