/**
 * The hash chain over an account's ledger that receipts carry, and the
 * receipt's canonical entry. Pure, shared by the server and the offline
 * verifier: entry_hash(n) = sha256_hex(entry_hash(n-1) + "\n" + canonical(entry n)),
 * with 64 zeros before the account's first entry. Canonical = JSON with
 * keys sorted; money and times as decimal strings (exact past 2^53).
 */
import { createHash } from "node:crypto";
import { accountName, creditTransactionName, recordName } from "../names/names.js";

/** The hash before an account's first entry. */
export const GENESIS_HASH = "0".repeat(64);
/** The JWS `typ` of receipts. */
export const RECEIPT_TYP = "formstate-receipt+jwt";
/** The issuer of receipts. */
export const RECEIPT_ISSUER = "formstate";
/** Where the server publishes the receipt keys. */
export const RECEIPT_JWKS_PATH = "/.well-known/receipt-keys.json";

/** One ledger entry as a receipt states it. */
export interface ReceiptEntry {
  version: 1;
  account: string;
  transaction: string;
  /** live, or test (the sandbox ledger): each has its own seq and chain. */
  environment: string;
  seq: string;
  kind: string;
  amount_micros: string;
  balance_after_micros: string;
  idempotency_key: string;
  description: string;
  usage_record: string;
  actor: string;
  /** Epoch ms. */
  create_time: string;
}

/** The `receipt` claim: the entry and its place in the chain. */
export interface ReceiptClaim extends ReceiptEntry {
  previous_entry_hash: string;
  entry_hash: string;
}

/** The ledger row fields a receipt states. */
export interface LedgerRowLike {
  tx_id: string;
  project_id: string;
  environment: string;
  seq: number | bigint | string;
  kind: string;
  amount_micros: number | bigint | string;
  balance_after_micros: number | bigint | string;
  idempotency_key: string;
  description: string;
  usage_record_id: string | null;
  actor: string;
  create_time: number | bigint | string;
}

export function entryOf(r: LedgerRowLike): ReceiptEntry {
  return {
    version: 1,
    account: accountName(r.project_id),
    transaction: creditTransactionName(r.project_id, r.tx_id),
    environment: r.environment,
    seq: String(r.seq),
    kind: r.kind,
    amount_micros: String(r.amount_micros),
    balance_after_micros: String(r.balance_after_micros),
    idempotency_key: r.idempotency_key,
    description: r.description,
    usage_record: r.usage_record_id ? recordName(r.project_id, r.usage_record_id) : "",
    actor: r.actor,
    create_time: String(r.create_time),
  };
}

/** JSON with object keys sorted at every level. */
export function canonicalJson(value: unknown): string {
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(canon(value));
}

/** The hash of an entry following `previous`. */
export function entryHash(previous: string, entry: ReceiptEntry): string {
  return createHash("sha256").update(`${previous}\n${canonicalJson(entry)}`).digest("hex");
}

/** Only the entry's own fields (a claim may carry more). */
export function entryPart(c: ReceiptClaim): ReceiptEntry {
  const { version, account, transaction, environment, seq, kind, amount_micros, balance_after_micros, idempotency_key, description, usage_record, actor, create_time } = c;
  return { version, account, transaction, environment, seq, kind, amount_micros, balance_after_micros, idempotency_key, description, usage_record, actor, create_time };
}
