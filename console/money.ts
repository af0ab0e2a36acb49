/** Money on screen: integer micro-USD (bigint) to dollars, without ever going through a float. */

const MICROS = 1_000_000n;

/** `2_500_000n` -> `$2.50`, `12_345n` -> `$0.012345`, `-1_000_000n` -> `-$1.00`. */
export function formatUsd(micros: bigint): string {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  let frac = (abs % MICROS).toString().padStart(6, "0").replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return `${negative ? "-" : ""}$${(abs / MICROS).toLocaleString("en-US")}.${frac}`;
}

/** Token and request counts with thousands separators. */
export function formatCount(n: bigint): string {
  return n.toLocaleString("en-US");
}
