/**
 * `npm run bench`: starts each server as its own process on loopback, drives
 * it with h2load (a prepared gRPC body) or, where every call must differ
 * (RecordUsage request ids), with a Node load generator in its own process,
 * and prints one table: req/s, p50/p99 latency, server CPU and peak RSS, and
 * ratios between rows of the same run. Not part of `npm test`.
 *
 * Env: BENCH_CALLS (per measured round, default 20000), BENCH_SOAK_CALLS
 * (default 1000000; 0 skips the soak), BENCH_NODE (the node binary for the
 * server processes, e.g. an extracted Node 24; default this one),
 * BENCH_ROWS (comma list of rows to run, e.g. "2,3,4"; default all; row 7 is
 * RecordUsage on PostgreSQL with 1 and 3 instances, bench/pg-cluster.ts),
 * BENCH_PROFILE_DIR (servers run with --cpu-prof writing there; summarize
 * with bench/profile-summary.ts; BENCH_SRC=1 runs the server from src/ under tsx
 * so the profile names source files), BENCH_SERVER_ENV (extra KEY=VALUE,... for
 * the Formstate server, e.g. FORMSTATE_GRPC_FAST_PATH=0).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { get as httpGet } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import Sqlite from "better-sqlite3";
import { Scope } from "../gen/formstate/v1/access_pb.js";
import { AccountService, GetAccountRequestSchema } from "../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService, VerifyApiKeyRequestSchema } from "../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../gen/formstate/v1/billing_service_pb.js";
import { ModelService, ModelVisibility } from "../gen/formstate/v1/model_service_pb.js";
import { defaultPlans } from "../src/plans/plans.js";
import { EchoRequestSchema } from "./echo-schema.js";
import { pgClusterRows } from "./pg-cluster.js";
import type { Row } from "./row.js";

const root = join(import.meta.dirname, "..");
const CALLS = Number(process.env.BENCH_CALLS ?? 20_000);
const SOAK = Number(process.env.BENCH_SOAK_CALLS ?? 1_000_000);
const work = mkdtempSync(join(tmpdir(), "formstate-bench-"));
const children: ChildProcess[] = [];
const SERVER_NODE = process.env.BENCH_NODE || process.execPath;
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
const ROWS = process.env.BENCH_ROWS ? new Set(process.env.BENCH_ROWS.split(",").map((r) => r.trim())) : undefined;
const wanted = (row: string) => !ROWS || ROWS.has(row);
const SERVER_ENV = Object.fromEntries((process.env.BENCH_SERVER_ENV ?? "").split(",").filter(Boolean).map((kv) => kv.split("=") as [string, string]));


function ensureH2load(): void {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
  } catch {
    console.error("h2load missing: installing Debian's nghttp2-client");
    execFileSync("bash", ["-c", "apt-get install -y nghttp2-client >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y nghttp2-client >/dev/null)"], { stdio: "inherit" });
  }
}

/** Starts a process and resolves with its port once it prints one (PORT n, or Formstate's listening log). */
function start(args: string[], env: Record<string, string> = {}): Promise<{ proc: ChildProcess; port: number }> {
  if (PROFILE_DIR) args = [`--cpu-prof`, `--cpu-prof-dir=${PROFILE_DIR}`, ...args];
  const proc = spawn(SERVER_NODE, args, { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    let out = "";
    const onData = (d: Buffer) => {
      out += d;
      const m = /PORT (\d+)/.exec(out) ?? /running in development mode on http:\/\/[^:]+:(\d+)/.exec(out);
      if (m) {
        proc.stdout!.off("data", onData);
        proc.stdout!.resume();
        resolve({ proc, port: Number(m[1]) });
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", (d) => (out += d));
    proc.once("exit", (code) => reject(new Error(`${args.join(" ")} exited ${code}: ${out.slice(-2000)}`)));
  });
}

/** utime+stime ticks and peak RSS of a process, from /proc. */
function procStats(pid: number): { ticks: number; sysTicks: number; mainTicks: number; hwmKb: number; rssKb: number } {
  const fieldsOf = (path: string) => {
    const stat = readFileSync(path, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  };
  const fields = fieldsOf(`/proc/${pid}/stat`);
  // The main thread (the event loop) apart from the others (libuv's pool doing WAL syncs, the checkpointer, V8's).
  const main = fieldsOf(`/proc/${pid}/task/${pid}/stat`);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { ticks: Number(fields[11]) + Number(fields[12]), sysTicks: Number(fields[12]), mainTicks: Number(main[11]) + Number(main[12]), hwmKb: kb("VmHWM"), rssKb: kb("VmRSS") };
}

function grpcFrame(schema: DescMessage, init: Record<string, unknown>): Buffer {
  const bytes = toBinary(schema, create(schema, init));
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt32BE(bytes.length, 1);
  Buffer.from(bytes).copy(frame, 5);
  return frame;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** One h2load round against a gRPC method; latencies from its per-request log. */
function h2load(port: number, path: string, body: Buffer, headers: Record<string, string>, n: number, c = 8, m = 10, rate?: number) {
  const bodyFile = join(work, "body.bin");
  const logFile = join(work, "h2load.log");
  writeFileSync(bodyFile, body);
  rmSync(logFile, { force: true });
  const args = ["-n", String(n), "-c", String(c), "-m", String(m), "-t", "1", "-d", bodyFile, "--log-file", logFile, "-H", "content-type: application/grpc", "-H", "te: trailers"];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  if (rate) args.push("--rps", String(Math.max(1, Math.round(rate / c))));
  args.push(`http://127.0.0.1:${port}${path}`);
  const out = execFileSync("h2load", args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  const failed = Number(/requests: .* (\d+) failed/.exec(out)?.[1] ?? 0);
  const lat = readFileSync(logFile, "utf8")
    .trim()
    .split("\n")
    .map((l) => Number(l.split("\t")[2]) / 1000)
    .sort((a, b) => a - b);
  return { rps, p50: percentile(lat, 50), p99: percentile(lat, 99), failed };
}

/** Measures a round with CPU and RSS of the server process. */
function measured(name: string, pid: number, round: () => { rps: number; p50: number; p99: number; failed?: number; firstError?: string }, note?: string): Row {
  const before = procStats(pid);
  const t0 = performance.now();
  const r = round();
  const secs = (performance.now() - t0) / 1000;
  const after = procStats(pid);
  if (r.failed) note = `${note ? `${note}; ` : ""}${r.failed} failed${"firstError" in r && r.firstError ? ` (first: ${String(r.firstError).slice(0, 80)})` : ""}`;
  const cpuSecs = (after.ticks - before.ticks) / 100;
  const pct = (ticks: number) => ((ticks / 100 / secs) * 100).toFixed(0);
  const split = `event loop ${pct(after.mainTicks - before.mainTicks)}%, kernel ${pct(after.sysTicks - before.sysTicks)}%`;
  return { name, rps: r.rps, p50: r.p50, p99: r.p99, cpu: (cpuSecs / secs) * 100, cpuUs: r.rps > 0 ? (cpuSecs / (r.rps * secs)) * 1e6 : NaN, rssMb: after.hwmKb / 1024, note: note ? `${split}; ${note}` : split };
}

async function main() {
  const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
  ensureH2load();
  const rows: Row[] = [];
  const echoBody = grpcFrame(EchoRequestSchema, { text: "hello" });
  const warm = (fn: () => unknown) => {
    for (let i = 0; i < 3; i++) fn();
  };

  // Rows 1 and 2: the two stacks' ceilings.
  for (const [name, file] of [
    ["1 echo, @grpc/grpc-js", "bench/servers/grpcjs-echo.ts"],
    ["2 echo, Formstate stack (listener + gRPC fast path)", "bench/servers/connect-echo.ts"],
    ["2c echo, Formstate stack with FORMSTATE_GRPC_FAST_PATH=0 (listener + Connect)", "bench/servers/connect-echo.ts"],
  ] as const) {
    if (!wanted(name.split(" ")[0]) && !wanted(name[0])) continue;
    log(`starting ${name}`);
    const { proc, port } = await start(["--import", "tsx", file], name.startsWith("2c") ? { FORMSTATE_GRPC_FAST_PATH: "0" } : {});
    log(`port ${port}`);
    warm(() => h2load(port, "/bench.v1.EchoService/Echo", echoBody, {}, Math.min(CALLS, 5000)));
    const peak = measured(name, proc.pid!, () => h2load(port, "/bench.v1.EchoService/Echo", echoBody, {}, CALLS));
    rows.push(peak);
    // The latency target's control: the same load generator at half of a bare echo's peak shows the
    // tail that h2load and two shared cores add before any work of ours.
    if (!name.startsWith("2c")) {
      rows.push(measured(`${name.split(" ")[0]}b ${name.slice(name.indexOf(" ") + 1)} at half its peak`, proc.pid!, () => h2load(port, "/bench.v1.EchoService/Echo", echoBody, {}, Math.round(peak.rps * 5), 8, 10, peak.rps / 2), "latency control"));
    }
    await stopProcess(proc);
  }
  if (![..."34567"].some(wanted)) return printTable(rows);

  // Formstate itself: rate limits lifted (they are what row 3 would otherwise measure).
  const plansFile = join(work, "plans.json");
  writeFileSync(plansFile, JSON.stringify(defaultPlans.map((p) => ({ ...p, tier: undefined, rateLimit: { requestsPerSecond: 1_000_000, burst: 1_000_000 }, apiKeyLimit: null }))));
  const dataDir = join(work, "data");
  const serverEnv = { PORT: "0", HOST: "127.0.0.1", FORMSTATE_DATA_DIR: dataDir, FORMSTATE_PLANS_FILE: plansFile, LOG_LEVEL: "warn", ...SERVER_ENV };
  // The product as `npm start` runs it: the compiled build (dist/), plain node, no TypeScript loader.
  execFileSync(process.execPath, ["scripts/build.mjs", "--if-stale", "--quiet"], { cwd: root, stdio: "inherit" });
  const serverArgs = process.env.BENCH_SRC ? ["--import", "tsx", "src/main.ts"] : ["dist/main.js"];
  // Row 7: PostgreSQL, 1 and 3 instances (bench/pg-cluster.ts); before the SQLite server starts, so nothing else runs.
  if (wanted("7")) {
    rows.push(
      ...(await pgClusterRows({
        root,
        start,
        stop: stopProcess,
        procStats,
        prepare: async (baseUrl, dir) => (await prepareDemo(baseUrl, devToken(dir))).secret,
        serverArgs,
        serverEnv,
        dataDir,
        calls: CALLS,
        log,
      })),
    );
    if (![..."3456"].some(wanted)) return printTable(rows);
  }
  const { proc, port } = await start(serverArgs, { ...serverEnv, FORMSTATE_DEBUG_LATENCY: "1" });
  const pid = proc.pid!;
  const token = devToken(dataDir);
  const baseUrl = `http://127.0.0.1:${port}`;
  /** Reads (and clears) the server's own latency histograms: the method's gRPC p50/p99. */
  const serverLatency = async (method: string) => {
    // node:http without keep-alive: a fresh connection each time (an idle pooled one may have been closed by the server).
    const get = () =>
      new Promise<string>((resolve, reject) =>
        httpGet(`${baseUrl}/debug/latency?reset=1`, { agent: false }, (res) => {
          let body = "";
          res.on("data", (d: Buffer) => (body += d));
          res.on("end", () => resolve(body));
        }).on("error", reject),
      );
    const snap = JSON.parse(await get().catch(get)) as { method: string; protocol: string; count: number; p50Ms: number; p99Ms: number; maxMs: number }[];
    const s = snap.find((x) => x.method === method && x.protocol === "grpc");
    const stages = snap.filter((x) => x.protocol === "internal").map((x) => ({ stage: x.method, count: x.count, p50Ms: x.p50Ms, p99Ms: x.p99Ms, maxMs: x.maxMs }));
    return { serverP50: s?.p50Ms ?? NaN, serverP99: s?.p99Ms ?? NaN, stages };
  };
  /** A measured round with the server-side latency of `method` over exactly that round. */
  const measuredServer = async (name: string, method: string, round: () => ReturnType<Parameters<typeof measured>[2]>, note?: string) => {
    await serverLatency(method);
    const row = measured(name, pid, round, note);
    return { ...row, ...(await serverLatency(method)) };
  };
  const VERIFY = "formstate.v1.ApiKeyService/VerifyApiKey";
  const RECORD = "formstate.v1.UsageService/RecordUsage";
  const BATCH = "formstate.v1.UsageService/BatchRecordUsage";
  const { secret, recordUsageReady } = await prepareDemo(baseUrl, token);
  // Sanity: the exact bodies h2load sends must succeed through a real client first.
  await createClient(AccountService, createGrpcTransport({ baseUrl, interceptors: [(next) => (req) => (req.header.set("x-api-key", secret), next(req))] })).getAccount({ name: "accounts/demo" });

  const verifyBody = grpcFrame(VerifyApiKeyRequestSchema, { key: secret });
  const keyHeader = { "x-api-key": secret };
  let row3: Row | undefined;
  if (wanted("3")) {
    warm(() => h2load(port, "/formstate.v1.ApiKeyService/VerifyApiKey", verifyBody, keyHeader, Math.min(CALLS, 5000)));
    row3 = await measuredServer("3 VerifyApiKey, API key (auth + rate limit)", VERIFY, () => h2load(port, "/formstate.v1.ApiKeyService/VerifyApiKey", verifyBody, keyHeader, CALLS));
    rows.push(row3);
  }

  if (recordUsageReady && (wanted("4") || wanted("5"))) {
    const load = (conns: number, calls: number, rate?: number, batch = 1, streams = 10) =>
      JSON.parse(
        execFileSync(process.execPath, ["--import", "tsx", "bench/load-record-usage.ts"], {
          cwd: root,
          env: { ...process.env, BASE_URL: baseUrl, API_KEY: secret, CONNS: String(conns), STREAMS: String(streams), CALLS: String(calls), RATE: rate ? String(rate) : "", BATCH: String(batch) },
          encoding: "utf8",
        }),
      ) as { rps: number; p50: number; p99: number; failed: number; firstError?: string };
    load(8, Math.min(CALLS, 5000));
    if (wanted("4")) {
      const row4 = await measuredServer("4 RecordUsage, API key (auth + limit + price + debit + commit)", RECORD, () => load(8, CALLS), "bench/load-record-usage.ts (raw http2 client, unique request ids)");
      rows.push(row4);
      rows.push(await measuredServer("4b RecordUsage at half of row 4's peak", RECORD, () => load(8, Math.round(row4.rps * 5), row4.rps / 2), "server p99 target < 2 ms"));
      rows.push(fdatasyncRow(1000));
    }
    if (wanted("5")) {
      rows.push(await measuredServer("5 RecordUsage ingest at saturation, 64 connections", RECORD, () => load(64, CALLS)));
      // Batch ingest: req/s counts usages (100 or 1,000 per call), latencies are per call.
      load(4, 5, undefined, 100, 2);
      rows.push(await measuredServer("5c BatchRecordUsage ingest, 100 usages per call, 4 conns x 4 streams", BATCH, () => load(4, Math.max(16, Math.round(CALLS * 4 / 100)), undefined, 100, 4), "usages/s; latency per call"));
      rows.push(await measuredServer("5d BatchRecordUsage ingest, 1,000 usages per call, 2 conns x 2 streams", BATCH, () => load(2, Math.max(8, Math.round(CALLS * 4 / 1000)), undefined, 1000, 2), "usages/s; latency per call"));
      rows.push(rawInsertRow(CALLS, "NORMAL"));
      rows.push(rawInsertRow(Math.min(CALLS, 20_000), "FULL"));
    }
  }
  if (row3) {
    const r3 = row3;
    rows.push(await measuredServer("3b VerifyApiKey at half of row 3's peak", VERIFY, () => h2load(port, "/formstate.v1.ApiKeyService/VerifyApiKey", verifyBody, keyHeader, Math.round(r3.rps * 5), 8, 10, r3.rps / 2), "server p99 target < 2 ms"));
  }

  // Row 6: the same JWT on every call versus an API key, same method.
  const getBody = grpcFrame(GetAccountRequestSchema, { name: "accounts/demo" });
  if (wanted("6")) {
    warm(() => h2load(port, "/formstate.v1.AccountService/GetAccount", getBody, { authorization: `Bearer ${token}` }, Math.min(CALLS, 5000)));
    rows.push(measured("6a GetAccount, same JWT every call", pid, () => h2load(port, "/formstate.v1.AccountService/GetAccount", getBody, { authorization: `Bearer ${token}` }, CALLS)));
    rows.push(measured("6b GetAccount, API key", pid, () => h2load(port, "/formstate.v1.AccountService/GetAccount", getBody, keyHeader, CALLS)));
  }

  printTable(rows);

  if (SOAK > 0) {
    const samples: number[] = [];
    const base = procStats(pid).rssKb;
    const chunk = 50_000;
    for (let done = 0; done < SOAK; done += chunk) {
      h2load(port, "/formstate.v1.AccountService/GetAccount", getBody, keyHeader, Math.min(chunk, SOAK - done));
      samples.push(procStats(pid).rssKb);
    }
    // RSS swings by tens of MB with garbage collection, so one sample against another says little: a leak
    // shows as a rising floor (the lowest sample of the last quarter against the first quarter's) and a slope.
    const mb = (kb: number) => (kb / 1024).toFixed(1);
    const q = Math.max(1, Math.floor(samples.length / 4));
    const floorFirst = Math.min(...samples.slice(0, q));
    const floorLast = Math.min(...samples.slice(-q));
    const xs = samples.map((_, i) => i);
    const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
    const my = samples.reduce((a, b) => a + b, 0) / samples.length;
    const slope = xs.reduce((a, x, i) => a + (x - mx) * (samples[i] - my), 0) / (xs.reduce((a, x) => a + (x - mx) ** 2, 0) || 1);
    const first = samples[0];
    const last = samples[samples.length - 1];
    console.log(`\nSoak: ${SOAK} authenticated GetAccount calls (API key), RSS sampled every ${chunk / 1000}k. After warm-up ${mb(base)} MB; first sample ${mb(first)} MB, last ${mb(last)} MB (${(((last - first) / first) * 100).toFixed(1)}%).`);
    console.log(`RSS floor (lowest sample of a quarter of the run): first quarter ${mb(floorFirst)} MB, last quarter ${mb(floorLast)} MB: growth ${(((floorLast - floorFirst) / floorFirst) * 100).toFixed(1)}% (target < 10%); least-squares slope ${mb(slope * (100_000 / chunk))} MB per 100k calls.`);
    console.log(`RSS samples (MB): ${samples.map((s) => (s / 1024).toFixed(0)).join(" ")}`);
  }
  await stopProcess(proc);
}

/** An admin JWT for demo from the development issuer whose keys live in `dataDir`. */
function devToken(dataDir: string): string {
  return execFileSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", "token", "--project", "demo", "--role", "admin", "--subject", "dev-admin"], {
    cwd: root,
    env: { ...process.env, FORMSTATE_DATA_DIR: dataDir },
    encoding: "utf8",
  }).trim();
}

/** The bench's account: an API key (read + write), a trillion micro-USD of credits, and the priced bench model. */
async function prepareDemo(baseUrl: string, token: string): Promise<{ secret: string; recordUsageReady: boolean }> {
  const transport = createGrpcTransport({ baseUrl, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] });
  const { secret } = await createClient(ApiKeyService, transport).createApiKey({ parent: "accounts/demo", apiKey: { displayName: "bench", scopes: [Scope.READ, Scope.WRITE] } });
  await createClient(BillingService, transport).addCredits({ parent: "accounts/demo", amountMicros: 1_000_000_000_000n, reason: "bench", requestId: "bench-credits" });
  try {
    await createClient(ModelService, transport).createModel({ modelId: "demo/bench-model", model: { displayName: "bench", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 2_000_000n, visibility: ModelVisibility.PRIVATE } });
    return { secret, recordUsageReady: true };
  } catch (err) {
    console.error(`RecordUsage rows skipped: cannot create a model (${String(err)})`);
    return { secret, recordUsageReady: false };
  }
}

/** SIGTERM and wait for the exit (a --cpu-prof profile is written then). */
function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.removeAllListeners("exit");
    proc.once("exit", () => resolve());
    proc.kill("SIGTERM");
  });
}

/**
 * Row 4c, a control for 4b's latency: what one fdatasync of this disk takes (an 8 KiB write, then the sync, as
 * a commit's WAL sync). An acknowledged RecordUsage waits for at least one, so its server-side p99 cannot be
 * below this row's.
 */
function fdatasyncRow(n: number): Row {
  const fd = openSync(join(work, "fdatasync-probe"), "w");
  const page = Buffer.alloc(8192, 1);
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    writeSync(fd, page, 0, page.length, (i % 64) * page.length);
    const t = performance.now();
    fdatasyncSync(fd);
    lat.push(performance.now() - t);
  }
  const secs = (performance.now() - t0) / 1000;
  closeSync(fd);
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { name: "4c disk control: fdatasync of an 8 KiB write on the bench's disk", rps: n / secs, p50: q(0.5), p99: q(0.99), cpu: NaN, cpuUs: NaN, rssMb: NaN, note: "syncs/s; a durable RecordUsage waits for >= 1" };
}

/** Row 5's ceiling: the same rows inserted by better-sqlite3 in one process, one transaction per row (as each call commits). */
function rawInsertRow(n: number, sync: "NORMAL" | "FULL"): Row {
  const file = join(work, `raw-${sync}.db`);
  const db = new Sqlite(file);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${sync}`);
  db.exec("create table usage_record (record_id text primary key, project_id text, request_id text, model text, input_tokens integer, output_tokens integer, cost_micros integer, occur_time integer)");
  const insert = db.prepare("insert into usage_record values (?, ?, ?, ?, ?, ?, ?, ?)");
  const one = db.transaction((i: number) => insert.run(`r${i}`, "demo", `q${i}`, "models/demo/bench-model", 100, 50, 200, Date.now()));
  const t0 = performance.now();
  for (let i = 0; i < n; i++) one(i);
  const secs = (performance.now() - t0) / 1000;
  db.close();
  return { name: `${sync === "NORMAL" ? "5b" : "5e"} raw better-sqlite3 insert, 1 row per transaction, synchronous=${sync}`, rps: n / secs, p50: NaN, p99: NaN, cpu: NaN, cpuUs: (secs / n) * 1e6, rssMb: NaN, note: "in-process ceiling" };
}

function printTable(rows: Row[]) {
  const by = (prefix: string) => rows.find((r) => r.name.startsWith(prefix));
  const ratio = (a?: Row, b?: Row) => (a && b && b.rps ? `${((a.rps / b.rps) * 100).toFixed(0)}%` : "n/a");
  const serverNode = SERVER_NODE === process.execPath ? process.version : execFileSync(SERVER_NODE, ["--version"], { encoding: "utf8" }).trim();
  console.log(`\nFormstate bench, ${new Date().toISOString()}, servers on node ${serverNode} (load generators on ${process.version}), ${CALLS} calls per round, h2load -c 8 -m 10 -t 1\n`);
  console.log("| row | req/s | p50 ms | p99 ms | server-side p50 ms | server-side p99 ms | server CPU % | server CPU µs/call | peak RSS MB | note |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "–");
  for (const r of rows) console.log(`| ${r.name} | ${f(r.rps, 0)} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.serverP50 ?? NaN, 2)} | ${f(r.serverP99 ?? NaN, 2)} | ${f(r.cpu, 0)} | ${f(r.cpuUs, 0)} | ${f(r.rssMb, 0)} | ${r.note ?? ""} |`);
  const staged = rows.filter((r) => r.stages?.length);
  if (staged.length > 0) {
    console.log("\nWhere the write path's time goes, server-side (queue: per call, queued until its batch's transaction began; transaction: per batch, BEGIN to COMMIT; durable: per batch, COMMIT to on disk; wal_sync: each fdatasync):\n");
    console.log("| row | stage | count | p50 ms | p99 ms | max ms |");
    console.log("|---|---|---:|---:|---:|---:|");
    for (const r of staged) for (const st of r.stages!) console.log(`| ${r.name.split(" ")[0]} | ${st.stage} | ${st.count} | ${f(st.p50Ms, 2)} | ${f(st.p99Ms, 2)} | ${f(st.maxMs, 2)} |`);
  }
  console.log("\nRatios (same run):");
  console.log(`- row 2 / row 1 (Formstate stack vs grpc-js): ${ratio(by("2 "), by("1 "))} (target >= 75%); without the fast path (2c / 1): ${ratio(by("2c"), by("1 "))}`);
  console.log(`- row 3 / row 2 (VerifyApiKey vs bare echo): ${ratio(by("3 "), by("2 "))} (target >= 80%)`);
  console.log(`- row 4 / row 2 (RecordUsage vs bare echo): ${ratio(by("4 "), by("2 "))} (target >= 40%)`);
  console.log(`- row 5 / row 5b (RecordUsage ingest vs raw insert at NORMAL): ${ratio(by("5 "), by("5b"))}; row 5 / row 5e (at FULL): ${ratio(by("5 "), by("5e"))}`);
  console.log(`- row 5c / row 5e (BatchRecordUsage ingest, 100 per call, vs raw insert at FULL): ${ratio(by("5c"), by("5e"))}; 5d (1,000 per call) / 5e: ${ratio(by("5d"), by("5e"))} (target >= 50%)`);
  console.log(`- row 6a / row 6b (JWT vs API key): ${ratio(by("6a"), by("6b"))}`);
  console.log(`- row 7b / row 7a (RecordUsage on PostgreSQL, 3 instances vs 1): ${ratio(by("7b"), by("7a"))}; row 7a / row 4 (PostgreSQL vs SQLite, 1 instance): ${ratio(by("7a"), by("4 "))}`);
  const cost = (a?: Row, b?: Row) => (a && b && Number.isFinite(a.cpuUs) && Number.isFinite(b.cpuUs) ? `${((b.cpuUs / a.cpuUs) * 100).toFixed(0)}%` : "n/a");
  console.log("\nThe same ratios from server CPU per call (inverse cost ratio, b/a; less sensitive to other load on the cores):");
  console.log(`- row 2 vs row 1: ${cost(by("2 "), by("1 "))}; row 3 vs row 2: ${cost(by("3 "), by("2 "))}; row 4 vs row 2: ${cost(by("4 "), by("2 "))}; row 5c vs row 5e: ${cost(by("5c"), by("5e"))}`);
}

try {
  await main();
} finally {
  for (const c of children) c.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
}
