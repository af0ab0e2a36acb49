/**
 * Graceful shutdown of the real process: an in-flight call completes during
 * SIGTERM, new connections are refused, and the process exits 0.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../..");
const dataDir = mkdtempSync(join(tmpdir(), "formstate-shutdown-"));
let child: ChildProcess | undefined;

afterAll(() => {
  child?.kill("SIGKILL");
  rmSync(dataDir, { recursive: true, force: true });
});

/** Starts `npm start`'s command and resolves with the port and the printed token. */
function startProcess(): Promise<{ port: number; token: string; exited: Promise<number | null> }> {
  child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: root,
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", FORMSTATE_DATA_DIR: dataDir, LOG_LEVEL: "info", FORMSTATE_ENV: "development" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let out = "";
    let port = 0;
    child!.stderr!.on("data", (d) => (out += d));
    child!.stdout!.on("data", (d: Buffer) => {
      out += d;
      for (const line of d.toString().split("\n")) {
        if (line.startsWith("{")) {
          const rec = JSON.parse(line) as { msg?: string; url?: string };
          if (rec.msg === "formstate listening") port = Number(new URL(rec.url!).port);
        }
      }
      const m = /export FORMSTATE_TOKEN=(\S+)/.exec(out);
      if (port && m) resolve({ port, token: m[1], exited });
    });
    child!.once("exit", (code) => reject(new Error(`server exited early (${code}): ${out}`)));
  });
}

describe("SIGTERM", () => {
  it("lets an in-flight call finish, then exits 0", async () => {
    const { port, token, exited } = await startProcess();
    const body = JSON.stringify({ name: "accounts/demo" });
    // Send the headers and half the body: the call is in flight on the server. `Expect: 100-continue`
    // makes the server say when it has read the headers, so SIGTERM never comes before that (a fixed wait did).
    const req = http.request({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/formstate.v1.AccountService/GetAccount",
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: `Bearer ${token}`, expect: "100-continue" },
    });
    const response = new Promise<{ status: number; text: string }>((resolve, reject) => {
      req.on("response", (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode!, text }));
      });
      req.on("error", reject);
    });
    const headersRead = new Promise<void>((resolve) => req.once("continue", resolve));
    req.flushHeaders();
    await headersRead;
    req.write(body.slice(0, 10));
    child!.kill("SIGTERM");
    // The listener closes: a new connection is refused (polled, as the signal's handling takes its time on a loaded machine).
    const refused = async () => fetch(`http://127.0.0.1:${port}/healthz`).then(() => false, () => true);
    const deadline = Date.now() + 10_000;
    while (!(await refused()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await refused()).toBe(true);
    req.end(body.slice(10));
    const res = await response;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text).account.name).toBe("accounts/demo");
    expect(await exited).toBe(0);
  });
});
