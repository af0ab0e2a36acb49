/**
 * The revenue-share rule, as pure functions (docs/marketplace.md):
 * a consumer's charge of `gross` micro-USD for another project's resource
 * with a share of `bps` basis points splits into
 *   publisher = floor(gross × bps / 10000)   (rounded down)
 *   platform  = gross − publisher            (the remainder)
 * so publisher + platform = gross exactly, in integers. A clawback of a
 * part of a charge is split by the same rule applied to the running total
 * taken back, so clawing back a whole charge takes back exactly its split.
 */
import { invalidArgument } from "../errors.js";

export const BPS = 10_000;

export interface Split {
  gross: number;
  publisher: number;
  platform: number;
}

/** The publisher's share of `gross` at `bps`, rounded down (exact for any safe integer: BigInt). */
export function publisherPart(gross: number, bps: number): number {
  const neg = gross < 0;
  const p = Number((BigInt(Math.abs(gross)) * BigInt(bps)) / BigInt(BPS));
  return neg ? -p : p;
}

/** Splits a consumer's charge: publisher rounded down, the platform keeps the remainder. */
export function split(gross: number, bps: number): Split {
  const publisher = publisherPart(gross, bps);
  return { gross, publisher, platform: gross - publisher };
}

/**
 * The part of one charge's split that taking back `takenBefore + now` of
 * `gross` (cumulative) adds: the publisher's side is the difference of the
 * publisher shares of the running totals, so the pieces of a charge taken
 * back in several steps sum to exactly its split.
 */
export function clawbackSplit(earning: { gross: number; publisher: number }, takenBefore: number, now: number): Split {
  const at = (taken: number) => (taken >= earning.gross ? earning.publisher : Number((BigInt(taken) * BigInt(earning.publisher)) / BigInt(earning.gross)));
  const publisher = at(takenBefore + now) - at(takenBefore);
  return { gross: now, publisher, platform: now - publisher };
}

export interface ShareBounds {
  /** FORMSTATE_PUBLISHER_SHARE_MAX_BPS */
  maxBps: number;
  /** FORMSTATE_PUBLISHER_SHARE_DEFAULT_BPS */
  defaultBps: number;
}

/** The configuration defaults (src/config.ts), for parts built without a config. */
export const DEFAULT_SHARE_BOUNDS: ShareBounds = { maxBps: 8000, defaultBps: 7000 };

/** A requested share checked against the platform's bound; unset = the default. INVALID_ARGUMENT beyond the bound. */
export function resolveShare(field: string, requested: number | undefined, bounds: ShareBounds): number {
  if (requested === undefined) return bounds.defaultBps;
  if (!Number.isInteger(requested) || requested < 0) throw invalidArgument(field, "must be a whole number of basis points from 0");
  if (requested > bounds.maxBps) throw invalidArgument(field, `must be at most ${bounds.maxBps} basis points (${bounds.maxBps / 100}%), the platform's bound`);
  return requested;
}
