/**
 * Prices usage in integer micro-USD. Token prices are per million tokens;
 * the product can exceed 2^53, so it is computed in BigInt and rounded up to
 * the next micro-USD (a fraction of a micro-USD is never given away).
 */

export interface ModelPrice {
  inputPriceMicrosPerMillion: number;
  outputPriceMicrosPerMillion: number;
}

export function modelCost(price: ModelPrice, inputTokens: number, outputTokens: number): number {
  const total = BigInt(inputTokens) * BigInt(price.inputPriceMicrosPerMillion) + BigInt(outputTokens) * BigInt(price.outputPriceMicrosPerMillion);
  return Number((total + 999_999n) / 1_000_000n);
}
