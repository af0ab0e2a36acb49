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
import { App } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { sqliteStatementsRun } from "../src/db/database.js";
import { createLogger } from "../src/logger.js";
import type { RecordInput } from "../src/usage/usage.js";
import { prepareMeteredProject } from "./metered-project.js";

const N = Number(process.env.RECORD_COST_N ?? 1000);
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
try {
  const caller = await prepareMeteredProject(app);
  let id = 0;
  const input = (): RecordInput => ({ requestId: `rc-${id++}`, usage: { kind: "model", model: "demo/model", inputTokens: 1000, outputTokens: 500 }, attributes: {} });

  const measure = async (name: string, run: () => Promise<void>) => {
    await run(); // warm-up round (JIT, statement cache)
    const s0 = sqliteStatementsRun();
    const c0 = process.cpuUsage();
    const st0 = app.usage.commits.stats();
    await run();
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
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}
