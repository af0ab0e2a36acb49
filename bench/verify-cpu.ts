/**
 * Server CPU and SQL statements per VerifyApiKey call, away from the noise of
 * req/s on shared cores: the server runs in a child process (a real server on
 * loopback over a SQLite file); the parent drives N calls over gRPC, 8 in
 * flight, and reads the child's CPU time from /proc before and after. The
 * child counts the better-sqlite3 statements it executes.
 *
 *   node --import tsx bench/verify-cpu.ts            # N = VERIFY_CALLS (default 5000)
 *
 * Rows: an uncapped key, and a key with a spend cap (whose remaining spend is
 * part of the answer).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Scope } from "../gen/formstate/v1/access_pb.js";
import { AccountService } from "../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService } from "../gen/formstate/v1/api_key_service_pb.js";

const CALLS = Number(process.env.VERIFY_CALLS ?? 5000);

if (process.argv[2] === "serve") {
  // Count statements: every execution of a better-sqlite3 statement goes through one of these methods.
  const Sqlite = (await import("better-sqlite3")).default;
  const probe = new Sqlite(":memory:");
  const proto = Object.getPrototypeOf(probe.prepare("select 1")) as Record<string, (...a: unknown[]) => unknown>;
  let statements = 0;
  let pragmas = 0;
  for (const m of ["run", "get", "all", "iterate"]) {
    const orig = proto[m];
    proto[m] = function (this: { source: string }, ...a: unknown[]) {
      // `PRAGMA data_version` (the cache's check for other processes' commits) reads no table: counted apart.
      if (this.source.startsWith("PRAGMA data_version")) pragmas++;
      else statements++;
      return orig.apply(this, a);
    };
  }
  probe.close();
  const { startTestServer } = await import("../test/support/test-server.js");
  // As bench/run.ts: plans without rate or key limits, so only the work of a call is measured.
  const { defaultPlans } = await import("../src/plans/plans.js");
  const plansFile = join(mkdtempSync(join(tmpdir(), "formstate-verify-cpu-")), "plans.json");
  writeFileSync(plansFile, JSON.stringify(defaultPlans.map((p) => ({ ...p, tier: undefined, rateLimit: { requestsPerSecond: 1_000_000, burst: 1_000_000 }, apiKeyLimit: null }))));
  const ts = await startTestServer({ FORMSTATE_PLANS_FILE: plansFile });
  const admin = await ts.token({ projectId: "bench", role: "admin", subject: "bench-admin" });
  await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
  const keys = createClient(ApiKeyService, ts.grpc(admin));
  const caller = await keys.createApiKey({ parent: "accounts/bench", apiKey: { displayName: "caller", scopes: [Scope.ADMIN] } });
  const plain = await keys.createApiKey({ parent: "accounts/bench", apiKey: { displayName: "plain", scopes: [Scope.READ] } });
  const capped = await keys.createApiKey({ parent: "accounts/bench", apiKey: { displayName: "capped", scopes: [Scope.READ], spendCapMicros: 5_000_000n } });
  console.log(JSON.stringify({ url: ts.url, caller: caller.secret, plain: plain.secret, capped: capped.secret }));
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (line === "count") console.log(JSON.stringify({ statements, pragmas }));
    if (line === "exit") void ts.close().then(() => process.exit(0));
  });
} else {
  const child = spawn(process.execPath, [...(process.env.VERIFY_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.VERIFY_PROFILE_DIR}`] : []), "--import", "tsx", import.meta.filename, "serve"], { stdio: ["pipe", "pipe", "inherit"] });
  process.on("exit", () => child.kill());
  const lines = createInterface({ input: child.stdout! });
  const next = () => new Promise<string>((resolve) => lines.once("line", resolve));
  const setup = JSON.parse(await next()) as { url: string; caller: string; plain: string; capped: string };
  const cpuMs = () => {
    const f = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1].split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime in clock ticks (100 Hz)
  };
  const count = async () => (child.stdin!.write("count\n"), JSON.parse(await next()) as { statements: number; pragmas: number });
  const client = createClient(
    ApiKeyService,
    createGrpcTransport({ baseUrl: setup.url, interceptors: [(n) => (req) => (req.header.set("x-api-key", setup.caller), n(req))] }),
  );
  async function round(key: string, n: number): Promise<void> {
    let i = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (i++ < n) {
          const r = await client.verifyApiKey({ key });
          if (!r.valid) throw new Error(`not valid: ${r.result}`);
        }
      }),
    );
  }
  try {
    for (const [name, key] of [["uncapped key", setup.plain], ["spend-capped key", setup.capped]] as const) {
      await round(key, 1000); // warm-up
      const s0 = await count();
      const c0 = cpuMs();
      await round(key, CALLS);
      const c1 = cpuMs();
      const s1 = await count();
      const per = (n: number) => (n / CALLS).toFixed(2);
      console.log(
        `VerifyApiKey, ${name}: ${(((c1 - c0) * 1000) / CALLS).toFixed(0)} µs server CPU per call, ${per(s1.statements - s0.statements)} SQL statements per call` +
          ` + ${per(s1.pragmas - s0.pragmas)} PRAGMA data_version (${CALLS} calls)`,
      );
    }
  } finally {
    child.stdin!.write("exit\n");
  }
}
