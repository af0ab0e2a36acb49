/**
 * `formstate receipt verify <file> --jwks <file or URL>`: verifies receipts
 * offline (signatures against the JWKS, entry hashes, the chain between
 * consecutive entries). With a URL the keys are fetched once; with a file
 * nothing leaves the machine. Exit 0 when every receipt verifies, 1 when
 * any does not, 2 for bad usage.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { JSONWebKeySet } from "jose";
import { parseReceiptFile, verifyReceipts } from "./receipt-verify.js";

export const RECEIPT_HELP = `usage: formstate receipt verify <file> --jwks <file or https URL> [--json]
  Verifies signed receipts offline: each signature against the JWKS (the server
  publishes it at /.well-known/receipt-keys.json), each entry's hash, and the
  hash chain between consecutive entries of an account. <file> holds receipts
  (compact JWS) one per line, or as a JSON array, or as {"receipts": [...]}.`;

/** Bad usage of the command (exit 2). */
export class ReceiptUsageError extends Error {}

async function loadJwks(source: string): Promise<JSONWebKeySet> {
  const text = /^https?:\/\//.test(source) ? await (await fetch(source, { signal: AbortSignal.timeout(10_000) })).text() : readFileSync(source, "utf8");
  const v = JSON.parse(text) as JSONWebKeySet;
  if (!v || !Array.isArray(v.keys)) throw new ReceiptUsageError(`${source} is not a JWKS ({"keys": [...]})`);
  return v;
}

/** Runs the command; returns the exit code. */
export async function receiptCommand(args: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { jwks: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, allowPositionals: true });
  if (values.help) {
    out(RECEIPT_HELP);
    return 0;
  }
  const [sub, file] = positionals;
  if (sub !== "verify" || !file || positionals.length !== 2) throw new ReceiptUsageError("receipt takes: verify <file> --jwks <file or URL>");
  if (!values.jwks) throw new ReceiptUsageError("--jwks is required (a file, or the server's /.well-known/receipt-keys.json URL)");
  let receipts: string[];
  try {
    receipts = parseReceiptFile(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ReceiptUsageError(`cannot read receipts from ${file}: ${(err as Error).message}`);
  }
  const report = await verifyReceipts(receipts, await loadJwks(values.jwks));
  if (values.json) out(JSON.stringify(report, null, 2));
  else {
    const okCount = report.receipts.filter((r) => r.ok).length;
    const lines = [`${report.ok ? "OK" : "FAILED"}: ${okCount} of ${report.receipts.length} receipts verified, ${report.linksChecked} chain links checked`];
    for (const g of report.gaps) lines.push(`  not covered: ${g}`);
    for (const p of report.problems) lines.push(`  problem: ${p}`);
    out(lines.join("\n"));
  }
  return report.ok ? 0 : 1;
}
