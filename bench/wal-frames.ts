/**
 * WAL pages per commit of one usage record: every B-tree a record touches
 * costs its commit one page (two write calls) in the WAL, which is most of a
 * small batch's fixed cost (bench/RESULTS.md). Records usages one at a time
 * through the real metering path on a SQLite file, and after each reads the
 * frames that commit appended to the WAL, naming each page's table or index
 * through `dbstat`. Deterministic: the same counts on a busy machine.
 *
 *   node --import tsx bench/wal-frames.ts            # 40 commits after 2,000 warm-up records
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import { App } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import type { RecordInput } from "../src/usage/usage.js";
import { prepareMeteredProject } from "./metered-project.js";

const COMMITS = Number(process.env.WAL_FRAMES_COMMITS ?? 40);
const PAGE = 4096;
const dataDir = mkdtempSync(join(tmpdir(), "formstate-wal-frames-"));
const file = join(dataDir, "formstate.db");
// NORMAL: the frames are the same at FULL; only the sync after them differs.
const config = loadConfig({ FORMSTATE_DATA_DIR: dataDir, DATABASE_URL: file, HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "silent", FORMSTATE_SQLITE_SYNCHRONOUS: "normal" });
const app = await App.create(config, { log: createLogger("silent") });
try {
  const caller = await prepareMeteredProject(app);
  let id = 0;
  const input = (): RecordInput => ({ requestId: `wf-${id++}`, usage: { kind: "model", model: "demo/model", inputTokens: 1000, outputTokens: 500 }, attributes: {} });
  for (let i = 0; i < 2000; i++) await app.usage.record(caller, "accounts/demo", input());

  const reader = new Sqlite(file);
  /** The page numbers of the frames in the WAL now (those of its current generation: salts match the header). */
  const frames = (): number[] => {
    const wal = readFileSync(`${file}-wal`);
    if (wal.length < 32) return [];
    const salt1 = wal.readUInt32BE(16);
    const salt2 = wal.readUInt32BE(20);
    const out: number[] = [];
    for (let off = 32; off + 24 + PAGE <= wal.length; off += 24 + PAGE) {
      if (wal.readUInt32BE(off + 8) !== salt1 || wal.readUInt32BE(off + 12) !== salt2) break;
      out.push(wal.readUInt32BE(off));
    }
    return out;
  };
  const perCommit: number[] = [];
  const byTree = new Map<string, number>();
  for (let k = 0; k < COMMITS; k++) {
    // An empty WAL first (the background checkpointer may have copied part of it already), so the next commit's frames stand alone.
    reader.pragma("wal_checkpoint(TRUNCATE)");
    const before = frames().length;
    await app.usage.record(caller, "accounts/demo", input());
    const added = frames().slice(before);
    perCommit.push(added.length);
    const names = new Map((reader.prepare("select pageno, name from dbstat").all() as { pageno: number; name: string }[]).map((r) => [r.pageno, r.name]));
    for (const p of added) {
      const name = names.get(p) ?? "(other)";
      byTree.set(name, (byTree.get(name) ?? 0) + 1);
    }
  }
  reader.close();
  const mean = perCommit.reduce((a, b) => a + b, 0) / perCommit.length;
  console.log(`wal-frames, ${COMMITS} one-record commits (model usage by API key), node ${process.version}, ${new Date().toISOString()}`);
  console.log(`frames per commit: mean ${mean.toFixed(2)}, min ${Math.min(...perCommit)}, max ${Math.max(...perCommit)}\n`);
  console.log("| table or index | pages per commit |");
  console.log("|---|---:|");
  for (const [name, n] of [...byTree].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) console.log(`| ${name} | ${(n / COMMITS).toFixed(2)} |`);
} finally {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
}
