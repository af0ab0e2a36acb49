/**
 * Money read back from the store: integer micro-USD as a JS number while a
 * double holds it exactly, as a bigint past 2^53 (src/db/exact-integers.ts).
 * Only balances (sums of the ledger) get there in practice; these helpers keep
 * arithmetic on them exact either way.
 */
import { exactInteger } from "../db/exact-integers.js";

export type Micros = number | bigint;

/** a + b, exact; a number again when the result is safe. */
export function addMicros(a: Micros, b: Micros): Micros {
  if (typeof a === "number" && typeof b === "number") {
    const s = a + b;
    if (Number.isSafeInteger(s)) return s;
  }
  return exactInteger(BigInt(a) + BigInt(b));
}

/**
 * A number for rules that only compare money against a cost (a safe
 * integer): clamped to ±(2^53 − 1), which compares the same way.
 */
export function comparableMicros(m: Micros): number {
  if (typeof m === "number") return m;
  return m > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : m < BigInt(Number.MIN_SAFE_INTEGER) ? Number.MIN_SAFE_INTEGER : Number(m);
}
