/**
 * `npm start` as a user runs it on a fresh checkout: no dist/ yet, so
 * prestart builds it; then ONE Node process (npm's `exec node dist/main.js`)
 * serves, answers /healthz and a real RPC, and stops on SIGTERM, whether the
 * signal goes to npm or to the server, leaving nothing listening or running.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, alive, childPids, waitFor } from "../support/built.js";

// A checkout without dist/: the files a clone has, and the repository's node_modules (as `npm install` left them).
const checkout = mkdtempSync(join(tmpdir(), "formstate-checkout-"));
const dataDir = mkdtempSync(join(tmpdir(), "formstate-npm-start-"));
const started: ChildProcess[] = [];

beforeAll(() => {
  for (const f of ["package.json", "package-lock.json", "src", "gen", "console", "scripts", "bin"]) cpSync(join(ROOT, f), join(checkout, f), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"), "dir");
});
afterAll(() => {
  for (const c of started) if (c.pid && alive(c.pid)) c.kill("SIGKILL");
  rmSync(checkout, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

interface Started {
  npm: ChildProcess;
  port: number;
  token: string;
  exited: Promise<number | null>;
  output: () => string;
}

function npmStart(): Promise<Started> {
  const npm = spawn("npm", ["start"], {
    cwd: checkout,
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", FORMSTATE_DATA_DIR: dataDir, LOG_LEVEL: "info", FORMSTATE_ENV: "development" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(npm);
  let out = "";
  const exited = new Promise<number | null>((resolve) => npm.once("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    npm.stderr!.on("data", (d) => (out += d));
    npm.stdout!.on("data", (d) => {
      out += d;
      const url = /"msg":"formstate listening"/.test(out) ? /"url":"([^"]+)"/.exec(out)?.[1] : undefined;
      const token = /export FORMSTATE_TOKEN=(\S+)/.exec(out)?.[1];
      if (url && token) resolve({ npm, port: Number(new URL(url).port), token, exited, output: () => out });
    });
    npm.once("exit", (code) => reject(new Error(`npm start exited early (${code}): ${out}`)));
  });
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** The server process npm started: npm's only child, and that child has none (sh exec'd node). */
function serverPid(npmPid: number): number {
  const children = childPids(npmPid);
  expect(children).toHaveLength(1);
  const [pid] = children;
  expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toEqual([expect.stringMatching(/node$/), "dist/main.js", ""]);
  expect(childPids(pid)).toEqual([]);
  return pid;
}

async function expectServing(s: Started): Promise<void> {
  const health = await fetch(`http://127.0.0.1:${s.port}/healthz`);
  expect(health.status).toBe(200);
  expect(await health.text()).toMatch(/SERVING/);
  const res = await fetch(`http://127.0.0.1:${s.port}/formstate.v1.AccountService/GetAccount`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${s.token}` },
    body: JSON.stringify({ name: "accounts/demo" }),
  });
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ account: { name: "accounts/demo" } });
}

describe("npm start", { timeout: 240_000 }, () => {
  it("builds dist/ when missing, serves from one process, and SIGTERM to npm stops it all", async () => {
    expect(existsSync(join(checkout, "dist"))).toBe(false);
    const s = await npmStart();
    expect(existsSync(join(checkout, "dist/main.js"))).toBe(true);
    const pid = serverPid(s.npm.pid!);
    await expectServing(s);

    s.npm.kill("SIGTERM");
    expect(await s.exited).toBe(0);
    await waitFor(() => !alive(pid), 20_000, "the server process to exit");
    expect(await listening(s.port)).toBe(false);
    expect(s.output()).toMatch(/"msg":"stopped"/);
  });

  it("SIGTERM to the server process itself stops it, and npm with it", async () => {
    const s = await npmStart();
    const pid = serverPid(s.npm.pid!);
    await expectServing(s);

    process.kill(pid, "SIGTERM");
    expect(await s.exited).toBe(0);
    await waitFor(() => !alive(pid), 20_000, "the server process to exit");
    expect(await listening(s.port)).toBe(false);
  });
});
