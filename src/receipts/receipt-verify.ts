/**
 * Offline verification of receipts: each one's signature against a JWKS,
 * its entry_hash against its entry and previous_entry_hash, and, across
 * the receipts of one account's ledger (live, or the test sandbox: each
 * has its own seq), that consecutive entries link (the later
 * one's previous_entry_hash is the earlier one's entry_hash) and that no
 * two receipts state different entries at one seq. Gaps between receipts
 * are reported, not failed: a statement may hold only some entries.
 */
import { type JSONWebKeySet, createLocalJWKSet, jwtVerify } from "jose";
import { GENESIS_HASH, RECEIPT_ISSUER, RECEIPT_TYP, type ReceiptClaim, entryHash, entryPart } from "./receipt-chain.js";

export interface ReceiptCheck {
  index: number;
  ok: boolean;
  transaction?: string;
  seq?: number;
  problem?: string;
}

export interface VerifyReport {
  ok: boolean;
  receipts: ReceiptCheck[];
  /** Pairs of consecutive entries whose link was checked. */
  linksChecked: number;
  /** Accounts and seq ranges not covered between receipts. */
  gaps: string[];
  problems: string[];
}

/** Receipts in a file: a JSON array of compact JWS, `{ "receipts": [...] }`, or one JWS per line. */
export function parseReceiptFile(text: string): string[] {
  const t = text.trim();
  if (t.startsWith("[") || t.startsWith("{")) {
    const v = JSON.parse(t) as unknown;
    const list = Array.isArray(v) ? v : (v as { receipts?: unknown }).receipts;
    if (!Array.isArray(list)) throw new Error("a JSON receipt file holds an array of receipts, or an object with a receipts array");
    return list.map((x) => (typeof x === "string" ? x : (x as { receipt?: string }).receipt ?? "")).filter(Boolean);
  }
  return t.split(/\s+/).filter(Boolean);
}

export async function verifyReceipts(jwsList: string[], jwks: JSONWebKeySet): Promise<VerifyReport> {
  const keys = createLocalJWKSet(jwks);
  const checks: ReceiptCheck[] = [];
  const good: ReceiptClaim[] = [];
  for (const [index, jws] of jwsList.entries()) {
    try {
      const { payload } = await jwtVerify(jws, keys, { issuer: RECEIPT_ISSUER, typ: RECEIPT_TYP, algorithms: ["EdDSA", "ES256"] });
      const claim = payload.receipt as ReceiptClaim | undefined;
      if (!claim || typeof claim !== "object" || typeof claim.entry_hash !== "string" || typeof claim.previous_entry_hash !== "string") throw new Error("no receipt claim");
      if (payload.sub !== claim.account) throw new Error("sub does not name the receipt's account");
      const seq = Number(claim.seq);
      if (seq === 1 && claim.previous_entry_hash !== GENESIS_HASH) throw new Error("the first entry must follow the genesis hash");
      if (entryHash(claim.previous_entry_hash, entryPart(claim)) !== claim.entry_hash) throw new Error("entry_hash does not match the entry");
      checks.push({ index, ok: true, transaction: claim.transaction, seq });
      good.push(claim);
    } catch (err) {
      checks.push({ index, ok: false, problem: `receipt ${index + 1}: ${(err as Error).message}` });
    }
  }
  const problems = checks.filter((c) => !c.ok).map((c) => c.problem!);
  const gaps: string[] = [];
  let linksChecked = 0;
  // One chain per account and ledger: the live ledger and the sandbox (test) each have their own seq.
  const byAccount = new Map<string, ReceiptClaim[]>();
  for (const c of good) {
    const chain = !c.environment || c.environment === "live" ? c.account : `${c.account} (${c.environment} ledger)`;
    byAccount.set(chain, [...(byAccount.get(chain) ?? []), c]);
  }
  for (const [account, list] of byAccount) {
    list.sort((a, b) => Number(a.seq) - Number(b.seq));
    for (let i = 1; i < list.length; i++) {
      const [a, b] = [list[i - 1], list[i]];
      const [sa, sb] = [Number(a.seq), Number(b.seq)];
      if (sa === sb) {
        if (a.entry_hash !== b.entry_hash) problems.push(`${account}: two different entries at seq ${sa}`);
        continue;
      }
      if (sb === sa + 1) {
        linksChecked++;
        if (b.previous_entry_hash !== a.entry_hash) problems.push(`${account}: seq ${sb} does not follow seq ${sa} (the chain is broken)`);
      } else {
        gaps.push(`${account}: seq ${sa + 1}..${sb - 1}`);
      }
    }
  }
  return { ok: problems.length === 0 && good.length > 0, receipts: checks, linksChecked, gaps, problems: good.length === 0 && problems.length === 0 ? ["no receipts"] : problems };
}
