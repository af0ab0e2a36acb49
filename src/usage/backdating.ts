/**
 * When usage may say it happened: at most BACKDATE_WINDOW_MS before the
 * server's clock (the same 30 days the proto's protovalidate rule states,
 * which is checked against the real clock) and at most 5 minutes ahead. A
 * backdated record is priced at the price in force at its occur_time.
 */
import { invalidArgument } from "../errors.js";
import { DAY_MS } from "./period.js";

export const BACKDATE_WINDOW_MS = 30 * DAY_MS;
export const FUTURE_SKEW_MS = 5 * 60_000;

/** INVALID_ARGUMENT naming occur_time when it is outside the window around `now`. */
export function requireOccurTime(occur: number | undefined, now: number): void {
  if (occur === undefined) return;
  if (occur > now + FUTURE_SKEW_MS) throw invalidArgument("occur_time", "must not be more than 5 minutes in the future");
  if (occur < now - BACKDATE_WINDOW_MS) throw invalidArgument("occur_time", "must be within the last 30 days (the backdating window)");
}
