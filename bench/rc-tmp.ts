/**
 * The write path's cost per usage record, in-process (no RPC, no load
 * generator): SQL statements run through Kysely per record and server CPU µs
 * per record (process.cpuUsage), for RecordUsage one at a time, RecordUsage
 * with many calls in flight (group commit), and BatchRecordUsage items.
 * Counts, not wall time: they hold on a machine shared with other work.
 *
 *   node --import tsx bench/record-cost.ts            # SQLite (a temporary file)
 *   RECORD_COST_N=2000 node --import tsx bench/record-cost.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Scope } from "../gen/formstate/v1/access_pb.js";
import { AccountService } from "../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService } from "../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../gen/formstate/v1/billing_service_pb.js";
import { ModelService, ModelVisibility } from "../gen/formstate/v1/model_service_pb.js";
import { App } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { sqliteStatementsRun } from "../src/db/database.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/server/server.js";
import type { RecordInput } from "../src/usage/usage.js";

const N = Number(process.env.RECORD_COST_N ?? 1000);
const SqliteX = (await import("better-sqlite3")).default;
const probeX = new SqliteX(":memory:");
const protoX = Object.getPrototypeOf(probeX.prepare("select 1")) as Record<string, (...a: unknown[]) => unknown>;
const timing = new Map<string, { n: number; ns: bigint }>();
for (const m of ["run", "get", "all", "iterate"]) {
  const orig = protoX[m];
  protoX[m] = function (this: { source: string }, ...a: unknown[]) {
    const t = process.hrtime.bigint();
    const r = orig.apply(this, a);
    const key = this.source.slice(0, 110);
    const e = timing.get(key) ?? { n: 0, ns: 0n };
    e.n++; e.ns += process.hrtime.bigint() - t; timing.set(key, e);
    return r;
  };
}
const dumpTiming = (label: string) => {
  const rows = [...timing.entries()].sort((a, b) => Number(b[1].ns - a[1].ns)).slice(0, 25);
  console.log("--", label);
  for (const [k, v] of rows) console.log((Number(v.ns) / 1000 / N).toFixed(1).padStart(8), "us/rec", String(v.n).padStart(7), k);
  timing.clear();
};

const dataDir = mkdtempSync(join(tmpdir(), "formstate-record-cost-"));
const config = loadConfig({
  FORMSTATE_DATA_DIR: dataDir,
  DATABASE_URL: join(dataDir, "formstate.db"),
  HOST: "127.0.0.1",
  PORT: "0",
  LOG_LEVEL: process.env.LOG_LEVEL ?? "silent",
  FORMSTATE_SQLITE_SYNCHRONOUS: process.env.FORMSTATE_SQLITE_SYNCHRONOUS ?? "normal",
});
const app = await App.create(config, { log: createLogger(config.logLevel) });
const server = await startServer(app);
try {
  const token = await app.devIssuer!.sign({ subject: "dev-admin", projectId: "demo", role: "admin" });
  const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}`, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] });
  await createClient(AccountService, transport).createAccount({ account: {} });
  const { secret } = await createClient(ApiKeyService, transport).createApiKey({ parent: "accounts/demo", apiKey: { displayName: "bench", scopes: [Scope.READ, Scope.WRITE] } });
  await createClient(BillingService, transport).addCredits({ parent: "accounts/demo", amountMicros: 1_000_000_000_000n, reason: "bench", requestId: "bench-credits" });
  await createClient(ModelService, transport).createModel({ modelId: "demo/model", model: { displayName: "bench", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 2_000_000n, visibility: ModelVisibility.PRIVATE } });
  const caller = await app.apiKeys.authenticate(secret, "127.0.0.1");
  let id = 0;
  const input = (): RecordInput => ({ requestId: `rc-${id++}`, usage: { kind: "model", model: "demo/model", inputTokens: 1000, outputTokens: 500 }, attributes: {} });

  const measure = async (name: string, run: () => Promise<void>) => {
    await run(); // warm-up round (JIT, statement cache)
    const s0 = sqliteStatementsRun();
    const c0 = process.cpuUsage();
    const st0 = app.usage.commits.stats();
    timing.clear();
    await run();
    dumpTiming(name);
    const cpu = process.cpuUsage(c0);
    const statements = sqliteStatementsRun() - s0;
    const st = app.usage.commits.stats();
    console.log(`| ${name} | ${(statements / N).toFixed(2)} | ${((cpu.user + cpu.system) / N).toFixed(0)} | ${st.transactions - st0.transactions} | ${st.setUnits - st0.setUnits} | ${st.setFallbacks - st0.setFallbacks} |`);
  };

  console.log(`record-cost, ${N} records per row, node ${process.version}, ${new Date().toISOString()}`);
  console.log("| row | statements per record | CPU µs per record | transactions | records decided set-based | runs handed back per-unit |");
  console.log("|---|---:|---:|---:|---:|---:|");
  await measure("RecordUsage one at a time", async () => {
    for (let i = 0; i < N; i++) await app.usage.record(caller, "accounts/demo", input());
  });
  await measure("RecordUsage, 100 in flight", async () => {
    for (let i = 0; i < N; i += 100) await Promise.all(Array.from({ length: Math.min(100, N - i) }, () => app.usage.record(caller, "accounts/demo", input())));
  });
  await measure("BatchRecordUsage, 100 per call", async () => {
    for (let i = 0; i < N; i += 100) {
      const out = await app.usage.recordBatch(caller, "accounts/demo", Array.from({ length: Math.min(100, N - i) }, input));
      if (out.some((o) => !o.ok)) throw new Error("a batch item failed");
    }
  });
} finally {
  await server.stop();
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}
