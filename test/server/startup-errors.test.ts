/**
 * Start-up failures of the built server (dist/main.js) as an operator meets
 * them: a path it cannot use stops it at once with exit code 1 and one line
 * naming the path, the variable it came from and the reason; no stack trace,
 * no hang. The read-only file system is a real one: a tmpfs mounted
 * read-only in a private mount namespace (`unshare`).
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DIST_MAIN, ROOT, ensureBuilt } from "../support/built.js";

const dir = mkdtempSync(join(tmpdir(), "formstate-startup-errors-"));
beforeAll(() => ensureBuilt());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** How long a failing start-up may take on a loaded 2-core machine; a hang fails the test. */
const FAIL_FAST_MS = 30_000;

interface Outcome {
  code: number | null;
  stderr: string;
  ms: number;
}

function start(command: string, args: string[], env: Record<string, string>): Promise<Outcome> {
  const started = Date.now();
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", FORMSTATE_ENV: "development", DATABASE_URL: "", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), FAIL_FAST_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, ms: Date.now() - started });
    });
  });
}

function expectOneClearLine(o: Outcome, ...mustContain: string[]): void {
  expect(o.code, o.stderr).toBe(1); // null would mean it hung and was killed
  expect(o.stderr.trimEnd().split("\n"), o.stderr).toHaveLength(1);
  expect(o.stderr).toMatch(/^formstate: /);
  expect(o.stderr).not.toMatch(/\n\s+at /);
  for (const s of mustContain) expect(o.stderr).toContain(s);
}

describe("a database path that cannot be opened", { timeout: 120_000 }, () => {
  it("names the path when the file is a directory", async () => {
    const path = join(dir, "a-directory.db");
    mkdirSync(path);
    const o = await start(process.execPath, [DIST_MAIN], { FORMSTATE_DATA_DIR: join(dir, "data1"), DATABASE_URL: path });
    expectOneClearLine(o, `cannot open the SQLite database ${path}`, "unable to open database file");
  });

  it("names the path when the file is not a database", async () => {
    const path = join(dir, "not-sqlite.db");
    writeFileSync(path, "this is not a SQLite file, but it is long enough to have a header to check. ".repeat(4));
    const o = await start(process.execPath, [DIST_MAIN], { FORMSTATE_DATA_DIR: join(dir, "data2"), DATABASE_URL: `file:${path}` });
    expectOneClearLine(o, `cannot open the SQLite database ${path}`, "file is not a database");
  });

  it("names the path, the variable and the reason when its directory cannot be made", async () => {
    const file = join(dir, "plain-file");
    writeFileSync(file, "");
    const path = join(file, "formstate.db");
    const o = await start(process.execPath, [DIST_MAIN], { FORMSTATE_DATA_DIR: join(dir, "data3"), DATABASE_URL: path });
    expectOneClearLine(o, `cannot open the SQLite database ${path} (from DATABASE_URL)`, `its directory ${file} is not writable`);
  });
});

// A private mount namespace needs `unshare` and user namespaces (or root); say so rather than pass silently.
let unshareProblem: string | undefined;
try {
  execFileSync("unshare", ["-rm", "true"], { stdio: "ignore" });
} catch {
  unshareProblem = "unshare -rm is not available here (util-linux, user namespaces): the read-only file-system cases cannot run";
}

describe.skipIf(unshareProblem !== undefined && process.env.CI !== "true")("FORMSTATE_DATA_DIR on a read-only file system", { timeout: 120_000 }, () => {
  if (unshareProblem) it("needs unshare", () => expect.fail(unshareProblem));

  /** Runs the server with `mountPoint` a read-only tmpfs, visible to it alone. */
  function onReadOnlyFs(mountPoint: string, env: Record<string, string>): Promise<Outcome> {
    mkdirSync(mountPoint, { recursive: true });
    const script = 'mount -t tmpfs -o ro,size=1m formstate-ro "$1" && shift && exec "$@"';
    return start("unshare", ["-rm", "sh", "-c", script, "sh", mountPoint, process.execPath, DIST_MAIN], env);
  }

  it("fails fast naming the directory when it exists but cannot be written", async () => {
    const mount = join(dir, "ro1");
    const o = await onReadOnlyFs(mount, { FORMSTATE_DATA_DIR: mount });
    expectOneClearLine(o, `FORMSTATE_DATA_DIR ${mount} is not writable`, "read-only (EROFS)");
    expect(o.ms).toBeLessThan(FAIL_FAST_MS);
  });

  it("fails fast when it does not exist and cannot be created", async () => {
    const mount = join(dir, "ro2");
    const o = await onReadOnlyFs(mount, { FORMSTATE_DATA_DIR: join(mount, "data") });
    expectOneClearLine(o, `FORMSTATE_DATA_DIR ${join(mount, "data")} is not writable`, "read-only (EROFS)");
  });

  it("in production (no data-dir key), names the database and the variable it came from", async () => {
    const mount = join(dir, "ro3");
    const o = await onReadOnlyFs(mount, {
      FORMSTATE_DATA_DIR: mount,
      FORMSTATE_ENV: "production",
      FORMSTATE_JWKS_URL: "https://idp.example/.well-known/jwks.json",
      FORMSTATE_JWT_ISSUER: "https://idp.example/",
      FORMSTATE_JWT_AUDIENCE: "formstate",
    });
    expectOneClearLine(o, `cannot open the SQLite database ${join(mount, "formstate.db")} (from FORMSTATE_DATA_DIR)`, "read-only (EROFS)");
  });
});
