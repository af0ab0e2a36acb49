/**
 * Durability of the write path: a real server process under concurrent,
 * group-committed ingest is SIGKILLed mid-flight; after a restart on the same
 * file every acknowledged record exists exactly once (with the name it was
 * acknowledged with), and replaying every request id (acknowledged or not)
 * charges each usage exactly once: balance = Σ ledger = credits − Σ costs.
 * Also: acknowledged transactions wait for a WAL sync unless told otherwise.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import Sqlite from "better-sqlite3";
import { sql } from "kysely";
import { afterAll, describe, expect, it } from "vitest";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { openDatabase } from "../../src/db/database.js";
import { defaultPlans } from "../../src/plans/plans.js";
import { bearer } from "../support/test-server.js";

const root = join(import.meta.dirname, "../..");
const PROJECT = "crash";
const CREDITS = 1_000_000_000;
const COST = 10; // 10 input tokens at 1 micro-USD per token

/** Starts `src/main.ts` on the given data directory; resolves with its port and the dev admin token. */
function startServer(dir: string, dbFile: string, plansFile: string): Promise<{ child: ChildProcess; port: number; token: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: root,
    env: {
      ...process.env,
      PORT: "0",
      HOST: "127.0.0.1",
      FORMSTATE_DATA_DIR: dir,
      DATABASE_URL: dbFile,
      LOG_LEVEL: "warn",
      FORMSTATE_DEV_PROJECT: PROJECT,
      FORMSTATE_PLATFORM_PROJECT: PROJECT,
      FORMSTATE_PLANS_FILE: plansFile,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      const p = /development mode on http:\/\/[^:]+:(\d+)/.exec(out);
      const t = /export FORMSTATE_TOKEN=(\S+)/.exec(out);
      if (p && t) resolve({ child, port: Number(p[1]), token: t[1] });
    });
    child.stderr!.on("data", (d: Buffer) => (out += d));
    child.once("exit", (code) => reject(new Error(`server exited ${code}: ${out}`)));
  });
}

describe("power-loss durable store", () => {
  it("by default every acknowledged transaction waits for a WAL sync started after its COMMIT; `normal` syncs nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "formstate-sync-"));
    try {
      const full = await openDatabase(join(dir, "a.db"));
      const normal = await openDatabase(join(dir, "b.db"), { synchronous: "normal" });
      // PRAGMA synchronous: 1 = NORMAL, 2 = FULL. Full durability runs NORMAL plus its own sync (wal-sync.ts).
      expect((await sql<{ synchronous: number }>`pragma synchronous`.execute(full.db)).rows[0].synchronous).toBe(1);
      expect((await sql<{ synchronous: number }>`pragma synchronous`.execute(normal.db)).rows[0].synchronous).toBe(1);
      expect(normal.walSyncs).toBeUndefined();

      const before = full.walSyncs!();
      await full.transaction(async (tx) => {
        await sql`create table t (x integer)`.execute(tx);
        await sql`insert into t values (1)`.execute(tx);
      });
      expect(full.walSyncs!()).toBe(before + 1);
      // Concurrent transactions share syncs, and none is answered before one that started after its COMMIT.
      const n0 = full.walSyncs!();
      await Promise.all(Array.from({ length: 20 }, (_, i) => full.transaction(async (tx) => void (await sql`insert into t values (${i})`.execute(tx)))));
      const shared = full.walSyncs!() - n0;
      expect(shared).toBeGreaterThanOrEqual(1);
      expect(shared).toBeLessThanOrEqual(20);
      // A write outside any transaction (autocommit) is synced on the spot, as FULL would.
      const n1 = full.walSyncs!();
      await sql`insert into t values (99)`.execute(full.db);
      expect(full.walSyncs!()).toBe(n1 + 1);
      // Reads sync nothing.
      await sql`select count(*) from t`.execute(full.db);
      expect(full.walSyncs!()).toBe(n1 + 1);
      await full.close();
      await normal.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("SIGKILL during batched ingest", () => {
  let dir: string;
  let proc: ChildProcess | undefined;
  afterAll(() => {
    proc?.kill("SIGKILL");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("loses no acknowledged record and double-charges nothing on replay", async () => {
    dir = mkdtempSync(join(tmpdir(), "formstate-crash-"));
    const dbFile = join(dir, "formstate.db");
    const plansFile = join(dir, "plans.json");
    writeFileSync(plansFile, JSON.stringify(defaultPlans.map((p) => ({ ...p, tier: undefined, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } }))));

    const first = await startServer(dir, dbFile, plansFile);
    proc = first.child;
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${first.port}`, interceptors: bearer(first.token) });
    await createClient(ModelService, transport).createModel({ modelId: "crash/m", model: { displayName: "m", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 0n } });
    await createClient(BillingService, transport).addCredits({ parent: `accounts/${PROJECT}`, amountMicros: BigInt(CREDITS), reason: "crash test", requestId: "crash-credits" });

    // 24 concurrent writers over 1,200 request ids; the process is killed once 300 are acknowledged,
    // with calls in flight (queued for, or inside, a group commit).
    const TOTAL = 1_200;
    const ids = Array.from({ length: TOTAL }, (_, i) => `k${i}`);
    const acked = new Map<string, string>();
    const usage = createClient(UsageService, transport);
    let next = 0;
    let killed = false;
    const kill = () => {
      if (killed) return;
      killed = true;
      first.child.kill("SIGKILL");
    };
    const worker = async () => {
      while (!killed && next < TOTAL) {
        const id = ids[next++];
        try {
          const r = await usage.recordUsage({ parent: `accounts/${PROJECT}`, requestId: id, usage: { case: "modelUsage", value: { model: "models/crash/m", inputTokens: BigInt(COST) } } });
          acked.set(id, r.usageRecord!.name);
          if (acked.size >= 300) kill();
        } catch {
          // In flight at the kill: unknown outcome, replayed below.
        }
      }
    };
    await Promise.all(Array.from({ length: 24 }, worker));
    kill();
    await new Promise((r) => (first.child.exitCode !== null || first.child.signalCode !== null ? r(null) : first.child.once("exit", r)));
    expect(acked.size).toBeGreaterThanOrEqual(300);

    // Straight after the kill, before any restart: every acknowledged record is on disk, once, by its name.
    const raw = new Sqlite(dbFile, { readonly: true });
    const rows = raw.prepare("select request_id, record_id, count(*) over (partition by request_id) as n from usage_record where project_id = ?").all(PROJECT) as { request_id: string; record_id: string; n: number }[];
    raw.close();
    const stored = new Map(rows.map((r) => [r.request_id, r]));
    const lost = [...acked.keys()].filter((id) => !stored.has(id));
    expect(lost).toEqual([]);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    for (const [id, name] of acked) expect(name.endsWith(`/${stored.get(id)!.record_id}`)).toBe(true);

    // Restart and replay every id: acknowledged ones answer with their first record, the rest are recorded once.
    const second = await startServer(dir, dbFile, plansFile);
    proc = second.child;
    const usage2 = createClient(UsageService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${second.port}`, interceptors: bearer(second.token) }));
    let cursor = 0;
    const replayed = new Map<string, { name: string; balance: bigint }>();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (cursor < TOTAL) {
          const id = ids[cursor++];
          const r = await usage2.recordUsage({ parent: `accounts/${PROJECT}`, requestId: id, usage: { case: "modelUsage", value: { model: "models/crash/m", inputTokens: BigInt(COST) } } });
          replayed.set(id, { name: r.usageRecord!.name, balance: r.balanceMicros });
        }
      }),
    );
    for (const [id, name] of acked) expect(replayed.get(id)!.name).toBe(name);
    second.child.kill("SIGTERM");
    await new Promise((r) => second.child.once("exit", r));
    proc = undefined;

    const db = new Sqlite(dbFile, { readonly: true });
    const records = db.prepare("select count(*) as n, count(distinct request_id) as d, sum(cost_micros) as c from usage_record where project_id = ?").get(PROJECT) as { n: number; d: number; c: number };
    const debits = db.prepare("select count(*) as n from credit_transaction where project_id = ? and kind = 'usage_debit'").get(PROJECT) as { n: number };
    const sum = db.prepare("select sum(amount_micros) as s from credit_transaction where project_id = ?").get(PROJECT) as { s: number };
    const balance = db.prepare("select credit_balance_micros as b from account where project_id = ?").get(PROJECT) as { b: number };
    db.close();
    expect(records).toEqual({ n: TOTAL, d: TOTAL, c: TOTAL * COST });
    expect(debits.n).toBe(TOTAL);
    expect(Number(balance.b)).toBe(Number(sum.s));
    expect(Number(balance.b)).toBe(CREDITS - TOTAL * COST);
  }, 180_000);
});
