/**
 * Test mode (docs/test-mode.md): which ledger a call uses, and the sandbox's
 * free credits. A call made with an `fs_test_` key meters against the
 * project's `test` ledger, and so does every caller (users and keys) of a
 * test-mode project; every other caller (users, live keys) against `live`. The sandbox is topped up to the plan's sandbox allowance once a
 * month, on the first test-mode use of the month, so test usage never needs
 * (or touches) real credits.
 */
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import type { Db } from "../db/database.js";
import { failedPrecondition, permissionDenied } from "../errors.js";
import { monthKey } from "../usage/period.js";
import { type Environment, balanceOf, book, findByIdempotencyKey } from "./ledger.js";
import type { Micros } from "./micros.js";

/** The sandbox allowance when the plan names none: 100 USD a month. */
export const DEFAULT_SANDBOX_CREDITS_MICROS = 100_000_000;

/** The part of a plan the sandbox reads (`sandboxCreditsMicros` in the plans file). */
export interface SandboxPlan {
  sandboxCreditsMicros?: number;
}

export const sandboxAllowance = (plan: SandboxPlan) => plan.sandboxCreditsMicros ?? DEFAULT_SANDBOX_CREDITS_MICROS;

/** What decides a caller's ledger: its kind, a key's environment, and whether its project is in test mode. */
export interface EnvironmentCaller {
  kind?: string;
  environment?: Environment;
  testProject?: boolean;
}

/** The ledger a caller meters against: the sandbox for test keys and test-mode projects, else live. */
export function callerEnvironment(caller: EnvironmentCaller): Environment {
  return caller.testProject || (caller.kind === "api_key" && caller.environment === "test") ? "test" : "live";
}

/**
 * The ledger a report or listing reads: the one asked for, else the
 * caller's. A key reads only its own environment (a test key never sees
 * live money, a live key never mixes test usage in); users may read either
 * (a test-mode project's live ledger is empty).
 */
export function readEnvironment(caller: EnvironmentCaller, asked: KeyEnvironment): Environment {
  const own = callerEnvironment(caller);
  if (asked === KeyEnvironment.UNSPECIFIED) return own;
  const env: Environment = asked === KeyEnvironment.TEST ? "test" : "live";
  if (caller.kind === "api_key" && env !== own) {
    throw permissionDenied(`a ${own} API key reads only ${own} usage and credits; use a ${env} key or sign in`, "ENVIRONMENT_MISMATCH");
  }
  return env;
}

/**
 * Refuses real-money movements (Stripe checkout and portal, x402 top-ups)
 * in test mode: a test-mode project never pays or is paid
 * (FAILED_PRECONDITION `TEST_MODE_PROJECT`), a test key of a live project
 * must use a live key or sign in (PERMISSION_DENIED `TEST_MODE_KEY`).
 */
export function requireLiveMoney(caller: EnvironmentCaller, what = "buy plans or credits with real money"): void {
  if (caller.testProject) throw failedPrecondition(`this is a test-mode project: it cannot ${what}; use a live project (docs/test-mode.md)`, "TEST_MODE_PROJECT");
  if (callerEnvironment(caller) === "test") throw permissionDenied(`a test API key cannot ${what}: use a live key or sign in`, "TEST_MODE_KEY");
}

/** The wire enum of a stored environment. */
export const wireEnvironment = (env: string) => (env === "test" ? KeyEnvironment.TEST : KeyEnvironment.LIVE);

const topUpKey = (now: number) => `sandbox-credits:${monthKey(now)}`;

/** Tops the sandbox up to the plan's allowance, once a month (inside the caller's write transaction). */
export async function topUpSandbox(tx: Db, projectId: string, plan: SandboxPlan, now: number): Promise<void> {
  const key = topUpKey(now);
  if (await findByIdempotencyKey(tx, projectId, key, "test")) return;
  const balance = await balanceOf(tx, projectId, "test");
  const allowance = sandboxAllowance(plan);
  const amount = balance >= allowance ? 0 : Number(BigInt(allowance) - BigInt(balance));
  // Booked even when 0: it marks the month's top-up as done.
  await book(tx, { projectId, environment: "test", kind: "grant", amountMicros: amount, idempotencyKey: key, description: `test-mode sandbox credits ${monthKey(now)}` }, now);
}

/** The sandbox balance as a test-mode call would see it now (this month's top-up included). Reads only. */
export async function sandboxAvailable(db: Db, projectId: string, plan: SandboxPlan, now: number): Promise<Micros> {
  const balance = await balanceOf(db, projectId, "test");
  if (await findByIdempotencyKey(db, projectId, topUpKey(now), "test")) return balance;
  const allowance = sandboxAllowance(plan);
  return balance >= allowance ? balance : allowance;
}
