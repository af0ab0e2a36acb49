/**
 * The compiled build (dist/) for tests that run what users run: `npm start`,
 * bin/formstate.js, dist/main.js. Rebuilt only when a source is newer than
 * it; scripts/build.mjs holds a lock, so test files racing here build once.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "../..");
export const DIST_MAIN = join(ROOT, "dist/main.js");
export const BIN = join(ROOT, "bin/formstate.js");

export function ensureBuilt(): void {
  execFileSync(process.execPath, ["scripts/build.mjs", "--if-stale", "--quiet"], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
}

/** The direct children of a process (Linux: /proc), to prove a command left no second process. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
    if (text) out.push(...text.split(/\s+/).map(Number));
  }
  return out;
}

/** True while a process with this id exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\nState:\s+Z/.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** Polls `check` until it is true or `ms` pass. */
export async function waitFor(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
