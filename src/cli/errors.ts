/**
 * The CLI's exit codes and how a failure is printed: one line on stderr
 * (`formstate: <message>`, or `{"error":{...}}` with --json), never a stack.
 */
import { ConnectError } from "@connectrpc/connect";
import { CommanderError } from "commander";
import { ConfigError } from "../config.js";

/** Exit codes, as documented in README (CLI section). */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Bad usage: a missing or malformed option, or a command the configuration does not allow (exit 2). */
export class UsageError extends Error {}

/** The exit code, a short machine-readable code and a one-line message for anything a command threw. */
export function describeFailure(err: unknown): { exitCode: number; code: string; message: string } {
  if (err instanceof CommanderError) {
    return { exitCode: EXIT.usage, code: err.code.replace(/^commander\./, ""), message: err.message.replace(/^error: /, "") };
  }
  if (err instanceof UsageError) return { exitCode: EXIT.usage, code: "usage", message: err.message };
  // The configuration names every bad variable; on one line, separated by semicolons.
  if (err instanceof ConfigError) return { exitCode: EXIT.usage, code: "config", message: `invalid configuration: ${err.problems.join("; ")}` };
  if (err instanceof ConnectError) return { exitCode: EXIT.failed, code: CONNECT_CODES[err.code] ?? String(err.code), message: err.rawMessage };
  return { exitCode: EXIT.failed, code: "failed", message: (err instanceof Error ? err.message : String(err)).split("\n")[0] };
}

/** Prints the failure on one line and returns its exit code. */
export function reportFailure(err: unknown, json: boolean): number {
  const f = describeFailure(err);
  process.stderr.write(json ? `${JSON.stringify({ error: f })}\n` : `formstate: ${f.message}\n`);
  return f.exitCode;
}

/** Connect codes as the Connect protocol spells them, by number. */
const CONNECT_CODES = ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"];
