/**
 * Group commit: concurrent units share SQLite transactions, each answered
 * only after the commit holding its rows (checked from a second connection
 * at the moment of the answer, and across a SIGKILL of a real server
 * process); a failing unit is rolled back alone; ledger and idempotency stay
 * exact through RecordUsage.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import Sqlite from "better-sqlite3";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { type Database, openDatabase } from "../../src/db/database.js";
import { createGroupCommit } from "../../src/db/group-commit.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { bearer, type TestServer, startTestServer } from "../support/test-server.js";

const root = join(import.meta.dirname, "../..");

describe("group commit on SQLite", () => {
  let dir: string;
  let database: Database;
  let file: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "formstate-gc-"));
    file = join(dir, "gc.db");
    database = await openDatabase(file);
    await sql`create table gc_row (id integer primary key, note text not null)`.execute(database.db);
    await sql`create table gc_counter (k text primary key, n integer not null)`.execute(database.db);
    await sql`insert into gc_counter values ('c', 0)`.execute(database.db);
  });
  afterAll(async () => {
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("200 concurrent units: grouped, each committed before its answer, one bad unit fails alone", async () => {
    const gc = createGroupCommit(database);
    const reader = new Sqlite(file, { readonly: true });
    const seen = reader.prepare("select count(*) as n from gc_row where id = ?");
    const visibleAtAnswer: boolean[] = [];
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        gc
          .run(async (tx) => {
            await sql`insert into gc_row (id, note) values (${i}, ${"row " + i})`.execute(tx);
            await sql`update gc_counter set n = n + 1 where k = 'c'`.execute(tx);
            if (i === 77) throw new Error("unit 77 is bad");
            return i;
          })
          // A second connection sees only committed data: the row must be there when the caller hears back.
          .then((v) => (visibleAtAnswer.push((seen.get(i) as { n: number }).n === 1), v)),
      ),
    );
    reader.close();
    const failed = results.flatMap((r, i) => (r.status === "rejected" ? [[i, (r.reason as Error).message]] : []));
    expect(failed).toEqual([[77, "unit 77 is bad"]]);
    expect(results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<number>).value)).toEqual(Array.from({ length: 200 }, (_, i) => i).filter((i) => i !== 77));
    expect(visibleAtAnswer.length).toBe(199);
    expect(visibleAtAnswer.every(Boolean)).toBe(true);
    const rows = await sql<{ n: number }>`select count(*) as n from gc_row`.execute(database.db);
    expect(rows.rows[0].n).toBe(199);
    const missing = await sql<{ n: number }>`select count(*) as n from gc_row where id = 77`.execute(database.db);
    expect(missing.rows[0].n).toBe(0);
    const counter = await sql<{ n: number }>`select n from gc_counter where k = 'c'`.execute(database.db);
    expect(counter.rows[0].n).toBe(199);
    const { transactions, units } = gc.stats();
    expect(units).toBe(200);
    // Arriving together, they share transactions (a handful, not 200).
    expect(transactions).toBeLessThan(20);
  });

  it("a unit's failure inside a statement (constraint) rolls back only that unit", async () => {
    const gc = createGroupCommit(database);
    const out = await Promise.allSettled([
      gc.run((tx) => sql`insert into gc_row (id, note) values (1000, 'a')`.execute(tx)),
      gc.run(async (tx) => {
        await sql`insert into gc_row (id, note) values (1001, 'b')`.execute(tx);
        await sql`insert into gc_row (id, note) values (1000, 'duplicate')`.execute(tx);
      }),
      gc.run((tx) => sql`insert into gc_row (id, note) values (1002, 'c')`.execute(tx)),
    ]);
    expect(out.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    const ids = await sql<{ id: number }>`select id from gc_row where id >= 1000 order by id`.execute(database.db);
    expect(ids.rows.map((r) => r.id)).toEqual([1000, 1002]);
    expect(gc.stats().transactions).toBe(1);
  });

  it("tells where the time went: queue per unit, transaction and durable per batch, failed units included", async () => {
    const seen: [string, number][] = [];
    const gc = createGroupCommit(database, { observe: (stage, ms) => seen.push([stage, ms]) });
    const out = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        gc.run(async (tx) => {
          await sql`insert into gc_row (id, note) values (${2000 + i}, 'timed')`.execute(tx);
          if (i === 3) throw new Error("bad");
        }),
      ),
    );
    expect(out.filter((o) => o.status === "rejected")).toHaveLength(1);
    const count = (stage: string) => seen.filter(([s]) => s === stage).length;
    const { transactions } = gc.stats();
    expect(count("queue")).toBe(30);
    expect(count("transaction")).toBe(transactions);
    // A batch's durable time is told once its callers could be answered: all of them by now.
    expect(count("durable")).toBe(transactions);
    expect(seen.every(([, ms]) => Number.isFinite(ms) && ms >= 0)).toBe(true);
  });

  it("the WAL sync tells how long each fdatasync took", async () => {
    const timed = join(dir, "timed.db");
    const syncs: number[] = [];
    const db = await openDatabase(timed, { observeSync: (ms) => syncs.push(ms) });
    try {
      await db.transaction((tx) => sql`create table t (x integer)`.execute(tx));
      for (let i = 0; i < 5; i++) await db.transaction((tx) => sql`insert into t values (${i})`.execute(tx));
      // Every transaction waited for a sync started after its COMMIT; each completed sync was timed.
      expect(syncs.length).toBeGreaterThanOrEqual(6);
      expect(syncs.length).toBe(db.walSyncs!() - 1); // the one after migrations ran on the spot, before observing
      expect(syncs.every((ms) => ms >= 0 && ms < 60_000)).toBe(true);
    } finally {
      await db.close();
    }
  });
});

describe("RecordUsage through group commit", () => {
  const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({}, { plans });
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("concurrent records with a bad one and duplicates: the bad one fails alone, the rest are exact", async () => {
    const admin = await ts.token({ projectId: "gc", role: "admin" });
    await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
    await createClient(ModelService, ts.grpc(admin)).createModel({ modelId: "gc/m", model: { displayName: "m", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 0n, visibility: ModelVisibility.PRIVATE } });
    await ts.app.database.transaction((tx) => ledger.book(tx, { projectId: "gc", kind: "grant", amountMicros: 1_000_000, idempotencyKey: "gc-grant" }, Date.now()));
    const dev = await ts.token({ projectId: "gc", role: "developer" });
    const clients = Array.from({ length: 8 }, () => createClient(UsageService, createGrpcTransport({ baseUrl: ts.url, interceptors: bearer(dev) })));
    const before = ts.app.usage.commits.stats();
    // 160 calls: ids r0..r149 (each 100 tokens = 100 micro-USD), r0..r8 sent twice, one unknown model among them.
    const calls = Array.from({ length: 159 }, (_, i) => ({ id: `r${i < 150 ? i : i - 150}`, model: "models/gc/m" }));
    calls.splice(80, 0, { id: "bad", model: "models/gc/nope" });
    const out = await Promise.allSettled(
      calls.map((c, i) => clients[i % 8].recordUsage({ parent: "accounts/gc", requestId: c.id, usage: { case: "modelUsage", value: { model: c.model, inputTokens: 100n } } })),
    );
    const errors = out.flatMap((o, i) => (o.status === "rejected" ? [[calls[i].id, ConnectError.from(o.reason).code]] : []));
    expect(errors).toEqual([["bad", Code.InvalidArgument]]);
    // Duplicates answer with the first record.
    const byId = new Map<string, string>();
    out.forEach((o, i) => {
      if (o.status !== "fulfilled") return;
      const name = o.value.usageRecord!.name;
      const prev = byId.get(calls[i].id);
      if (prev) expect(name).toBe(prev);
      byId.set(calls[i].id, name);
    });
    expect(byId.size).toBe(150);
    const db = ts.app.database.db;
    const records = await db.selectFrom("usage_record").select((eb) => eb.fn.countAll<number>().as("n")).where("project_id", "=", "gc").executeTakeFirstOrThrow();
    expect(Number(records.n)).toBe(150);
    const balance = await ts.app.accounts.creditBalance("gc");
    expect(balance).toBe(1_000_000 - 150 * 100);
    expect(await ledger.ledgerSum(db, "gc")).toBe(balance);
    const after = ts.app.usage.commits.stats();
    expect(after.units - before.units).toBe(160);
    // Grouping is SQLite's (src/db/group-commit.ts: other dialects run one transaction per unit).
    if (ts.app.database.dialect === "sqlite") expect(after.transactions - before.transactions).toBeLessThan(160);
  });
});

describe("acknowledged records survive a process crash", () => {
  let dir: string;
  let proc: ChildProcess | undefined;
  afterAll(() => {
    proc?.kill("SIGKILL");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("SIGKILL right after the last answer loses no acknowledged record", async () => {
    dir = mkdtempSync(join(tmpdir(), "formstate-crash-"));
    const dbFile = join(dir, "formstate.db");
    // Rate limits are not what this measures: lift them.
    const plansFile = join(dir, "plans.json");
    writeFileSync(plansFile, JSON.stringify(defaultPlans.map((p) => ({ ...p, tier: undefined, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } }))));
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: root,
      env: { ...process.env, PORT: "0", HOST: "127.0.0.1", FORMSTATE_DATA_DIR: dir, DATABASE_URL: dbFile, LOG_LEVEL: "warn", FORMSTATE_DEV_PROJECT: "crash", FORMSTATE_PLANS_FILE: plansFile },
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc = child;
    const { port, token } = await new Promise<{ port: number; token: string }>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d;
        const p = /development mode on http:\/\/[^:]+:(\d+)/.exec(out);
        const t = /export FORMSTATE_TOKEN=(\S+)/.exec(out);
        if (p && t) resolve({ port: Number(p[1]), token: t[1] });
      });
      child.stderr!.on("data", (d: Buffer) => (out += d));
      child.once("exit", (code) => reject(new Error(`server exited ${code}: ${out}`)));
    });
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, interceptors: bearer(token) });
    await createClient(ModelService, transport).createModel({ modelId: "crash/m", model: { displayName: "m", inputPriceMicrosPerMillion: 0n, outputPriceMicrosPerMillion: 0n, visibility: ModelVisibility.PRIVATE } });
    const usage = createClient(UsageService, transport);
    const acked: string[] = [];
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        usage.recordUsage({ parent: "accounts/crash", requestId: `c${i}`, usage: { case: "modelUsage", value: { model: "models/crash/m", inputTokens: 1n } } }).then(() => acked.push(`c${i}`)),
      ),
    );
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(acked.length).toBe(300);
    const db = new Sqlite(dbFile, { readonly: true });
    const stored = new Set((db.prepare("select request_id from usage_record where project_id = 'crash'").all() as { request_id: string }[]).map((r) => r.request_id));
    db.close();
    expect(acked.filter((id) => !stored.has(id))).toEqual([]);
  }, 60_000);
});
