/** Calendar arithmetic in UTC for billing periods and usage buckets. */

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

export const floorTo = (t: number, unit: number) => Math.floor(t / unit) * unit;
export const ceilTo = (t: number, unit: number) => Math.ceil(t / unit) * unit;

/** The UTC calendar month holding `t`: the period of accounts without a paid subscription. */
export function monthOf(t: number): { start: number; end: number } {
  const d = new Date(t);
  return { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

/** `2026-11` for the month holding `t`. */
export function monthKey(t: number): string {
  return new Date(t).toISOString().slice(0, 7);
}
