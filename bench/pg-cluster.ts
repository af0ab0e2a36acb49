/**
 * Row 7 of `npm run bench` (issue 15): RecordUsage with 1 and with 3
 * Formstate instances on one PostgreSQL (and Redis), and a check that the
 * books are exact afterwards. Each instance gets its own load generator
 * process (bench/load-record-usage.ts); the row's req/s is every
 * acknowledged call over the wall time of the round. Exact means: one usage
 * record and one debit per acknowledged call, the debits summing to the
 * records' costs, and the account's balance equal to the sum of its ledger
 * (the plan's monthly grant is booked on first use, so "credits − costs" would
 * miss it). PostgreSQL keeps its default synchronous_commit (acknowledged =
 * durable), unlike the test suite's database.
 */
import { type ChildProcess, spawn } from "node:child_process";
import pg from "pg";
import type { Row } from "./row.js";


export interface ClusterDeps {
  root: string;
  /** Starts a Formstate server process (run.ts's `start`). */
  start(args: string[], env: Record<string, string>): Promise<{ proc: ChildProcess; port: number }>;
  stop(proc: ChildProcess): Promise<void>;
  procStats(pid: number): { ticks: number; hwmKb: number };
  /** Sets up demo: an API key with read+write, credits, the bench model; returns the key. */
  prepare(baseUrl: string, dataDir: string): Promise<string>;
  serverArgs: string[];
  serverEnv: Record<string, string>;
  dataDir: string;
  calls: number;
  log(m: string): void;
}

const PG_BASE = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

/** Load generator output. */
interface Load {
  rps: number;
  p50: number;
  p99: number;
  failed: number;
  firstError?: string;
}

function runLoad(root: string, env: Record<string, string>): Promise<Load> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--import", "tsx", "bench/load-record-usage.ts"], { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d));
    p.once("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as Load) : reject(new Error(`load generator exited ${code}`))));
  });
}

/** One row: `instances` servers on a fresh schema, the same total calls spread evenly. */
async function clusterRow(deps: ClusterDeps, instances: number): Promise<Row> {
  const schema = `bench_${instances}_${Date.now().toString(36)}`;
  const env = {
    ...deps.serverEnv,
    DATABASE_URL: `${PG_BASE}?schema=${schema}`,
    REDIS_URL: REDIS,
    FORMSTATE_REDIS_PREFIX: `${schema}:`,
  };
  const servers: { proc: ChildProcess; port: number }[] = [];
  const admin = new pg.Client({ connectionString: PG_BASE });
  await admin.connect();
  try {
    // Started together: concurrent starts on a fresh schema are part of what is measured to work.
    servers.push(...(await Promise.all(Array.from({ length: instances }, () => deps.start(deps.serverArgs, env)))));
    deps.log(`${instances} instance(s) on PostgreSQL schema ${schema}: ports ${servers.map((s) => s.port).join(", ")}`);
    const key = await deps.prepare(`http://127.0.0.1:${servers[0].port}`, deps.dataDir);
    const q = async (text: string) => (await admin.query(`SET search_path TO ${schema}; ${text}`)) as unknown as pg.QueryResult[];
    const one = async (text: string) => (await q(text))[1].rows[0] as Record<string, string>;
    // Warm each instance (connection pools, JIT), then measure.
    await Promise.all(servers.map((s) => runLoad(deps.root, { BASE_URL: `http://127.0.0.1:${s.port}`, API_KEY: key, CONNS: "4", STREAMS: "10", CALLS: "500", BATCH: "1" })));
    const warm = await one("SELECT count(*) AS n, coalesce(sum(cost_micros), 0) AS c FROM usage_record WHERE project_id = 'demo'");
    const per = Math.ceil(deps.calls / instances);
    const statsBefore = servers.map((s) => deps.procStats(s.proc.pid!));
    const t0 = performance.now();
    const loads = await Promise.all(servers.map((s) => runLoad(deps.root, { BASE_URL: `http://127.0.0.1:${s.port}`, API_KEY: key, CONNS: String(Math.max(2, Math.round(8 / instances))), STREAMS: "10", CALLS: String(per), BATCH: "1" })));
    const secs = (performance.now() - t0) / 1000;
    const statsAfter = servers.map((s) => deps.procStats(s.proc.pid!));
    const cpuSecs = statsAfter.reduce((a, s, i) => a + (s.ticks - statsBefore[i].ticks) / 100, 0);
    const failed = loads.reduce((a, l) => a + l.failed, 0);
    const acked = per * instances - failed;

    // Exactness, read straight from the database.
    const after = await one("SELECT count(*) AS n, coalesce(sum(cost_micros), 0) AS c FROM usage_record WHERE project_id = 'demo'");
    const bal = await one("SELECT credit_balance_micros AS b FROM account WHERE project_id = 'demo'");
    const sum = await one("SELECT coalesce(sum(amount_micros), 0) AS s FROM credit_transaction WHERE project_id = 'demo' AND environment = 'live'");
    const records = Number(after.n) - Number(warm.n);
    const problems: string[] = [];
    if (acked === 0) problems.push("no call succeeded");
    if (records !== acked) problems.push(`${records} records for ${acked} acknowledged calls`);
    if (BigInt(bal.b) !== BigInt(sum.s)) problems.push(`balance ${bal.b} != Σ ledger ${sum.s}`);
    const debits = await one("SELECT count(*) AS n, coalesce(sum(amount_micros), 0) AS s FROM credit_transaction WHERE project_id = 'demo' AND environment = 'live' AND kind = 'usage_debit'");
    if (BigInt(debits.s) !== -BigInt(after.c) || Number(debits.n) !== Number(after.n)) problems.push(`${debits.n} debits of ${debits.s} for ${after.n} records costing ${after.c}`);
    const exact = problems.length === 0 ? "exact: records = acks = debits, Σ debits = Σ cost, balance = Σ ledger" : `NOT EXACT: ${problems.join("; ")}`;
    const firstError = loads.find((l) => l.firstError)?.firstError;
    const weighted = (f: (l: Load) => number) => loads.reduce((a, l) => a + f(l), 0) / loads.length;
    return {
      name: `7${instances === 1 ? "a" : "b"} RecordUsage, ${instances} instance${instances === 1 ? "" : "s"} on one PostgreSQL + Redis`,
      rps: acked / secs,
      // Per-generator percentiles averaged (each generator saw a third of the calls).
      p50: weighted((l) => l.p50),
      p99: Math.max(...loads.map((l) => l.p99)),
      cpu: (cpuSecs / secs) * 100,
      cpuUs: acked > 0 ? (cpuSecs / acked) * 1e6 : NaN,
      rssMb: Math.max(...statsAfter.map((s) => s.hwmKb)) / 1024,
      note: `${exact}${failed ? `; ${failed} failed (first: ${String(firstError).slice(0, 80)})` : ""}; CPU summed over instances, PostgreSQL's own not counted`,
    };
  } finally {
    await Promise.all(servers.map((s) => deps.stop(s.proc)));
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
  }
}

/** Rows 7a (1 instance) and 7b (3 instances), or none with a reason when PostgreSQL or Redis is missing. */
export async function pgClusterRows(deps: ClusterDeps): Promise<Row[]> {
  const probe = new pg.Client({ connectionString: PG_BASE, connectionTimeoutMillis: 2000 });
  try {
    await probe.connect();
    await probe.end();
  } catch (err) {
    deps.log(`row 7 skipped: PostgreSQL at ${PG_BASE} unreachable (${String(err)}); start it or set BENCH_PG_URL`);
    return [];
  }
  return [await clusterRow(deps, 1), await clusterRow(deps, 3)];
}
