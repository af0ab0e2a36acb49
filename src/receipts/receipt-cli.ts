/**
 * What `formstate receipt verify <file> --jwks <file or URL>` does: reads
 * receipts and keys and verifies them offline (signatures against the JWKS,
 * entry hashes, the chain between consecutive entries). With a URL the keys
 * are fetched once; with a file nothing leaves the machine.
 */
import { readFileSync } from "node:fs";
import type { JSONWebKeySet } from "jose";
import { UsageError } from "../cli/errors.js";
import { type VerifyReport, parseReceiptFile, verifyReceipts } from "./receipt-verify.js";

async function loadJwks(source: string): Promise<JSONWebKeySet> {
  let text: string;
  try {
    text = /^https?:\/\//.test(source) ? await (await fetch(source, { signal: AbortSignal.timeout(10_000) })).text() : readFileSync(source, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read the JWKS from ${source}: ${(err as Error).message}`);
  }
  let v: JSONWebKeySet | undefined;
  try {
    v = JSON.parse(text) as JSONWebKeySet;
  } catch {
    v = undefined;
  }
  if (!v || !Array.isArray(v.keys)) throw new UsageError(`${source} is not a JWKS ({"keys": [...]})`);
  return v;
}

/** Verifies the receipts in `file` with the keys at `jwks` (a file or an http(s) URL). */
export async function verifyReceiptFile(file: string, jwks: string): Promise<VerifyReport> {
  let receipts: string[];
  try {
    receipts = parseReceiptFile(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`cannot read receipts from ${file}: ${(err as Error).message}`);
  }
  return verifyReceipts(receipts, await loadJwks(jwks));
}

/** The report for people. */
export function receiptSummary(report: VerifyReport): string {
  const okCount = report.receipts.filter((r) => r.ok).length;
  const lines = [`${report.ok ? "OK" : "FAILED"}: ${okCount} of ${report.receipts.length} receipts verified, ${report.linksChecked} chain links checked`];
  for (const g of report.gaps) lines.push(`  not covered: ${g}`);
  for (const p of report.problems) lines.push(`  problem: ${p}`);
  return lines.join("\n");
}
