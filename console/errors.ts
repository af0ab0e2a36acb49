/** Turns a failed call into one line for the user, with what our typed details advise. */
import { Code, ConnectError } from "@connectrpc/connect";
import { LimitReason } from "../gen/formstate/v1/errors_pb.js";
import { limitAdvice } from "../src/client/web.js";
import { planLabel } from "./labels.js";
import { formatUsd } from "./money.js";

export function describeError(err: unknown): string {
  const ce = ConnectError.from(err);
  let text = `${Code[ce.code] ?? ce.code}: ${ce.rawMessage}`;
  // fetch() failed before any answer: browsers report a CORS refusal exactly like a network error.
  if (ce.code === Code.Unknown && ce.cause instanceof TypeError) {
    text += " (is the API URL right and the server up, and is this page's origin in FORMSTATE_CORS_ORIGINS?)";
  }
  const advice = limitAdvice(ce);
  if (advice?.retryDelayMs !== undefined) text += ` (retry in ${Math.ceil(advice.retryDelayMs / 1000)} s)`;
  if (advice && advice.creditsNeededMicros > 0n) text += ` (${formatUsd(advice.creditsNeededMicros)} more credits needed)`;
  if (advice && advice.reason !== LimitReason.RATE_LIMITED && advice.upgradeOptions.length) {
    text += ` (upgrade: ${advice.upgradeOptions.map((o) => planLabel(o.tier)).join(", ")})`;
  }
  return text;
}
