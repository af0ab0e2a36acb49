/**
 * A load generator in its own process for RecordUsage, where every call
 * needs its own request_id (h2load repeats one body). It speaks gRPC on
 * Node's http2 client directly (a prepared frame per call, the status read
 * from the trailers) so the generator, which shares the cores with the
 * server, costs as little as it can: Connect's client cost more CPU per call
 * than the server it measured. CONNS HTTP/2 connections x STREAMS concurrent
 * calls, CALLS in all, optionally paced to RATE calls/s. With BATCH=n
 * (n > 1) each call is a BatchRecordUsage of n usages and `rps` counts usages
 * (every item's result is decoded: an item error counts as failed). Prints
 * {rps, p50, p99, failed, firstError} as JSON (latencies per call).
 */
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { BatchRecordUsageRequestSchema, BatchRecordUsageResponseSchema, RecordUsageRequestSchema } from "../gen/formstate/v1/usage_service_pb.js";
import { fromBinary } from "@bufbuild/protobuf";

const conns = Number(process.env.CONNS ?? 8);
const streams = Number(process.env.STREAMS ?? 10);
const calls = Number(process.env.CALLS ?? 10_000);
const rate = Number(process.env.RATE || 0);
const key = process.env.API_KEY!;
const baseUrl = process.env.BASE_URL!;
const batch = Number(process.env.BATCH || 1);
const path = batch > 1 ? "/formstate.v1.UsageService/BatchRecordUsage" : "/formstate.v1.UsageService/RecordUsage";
const sessions = Array.from({ length: conns }, () => http2.connect(baseUrl));
const latencies: number[] = [];
let next = 0;
let failed = 0;
let firstError: string | undefined;
const run = process.pid.toString(36) + Date.now().toString(36);

const usage = (i: number) => ({ requestId: `${run}-${i}`, usage: { case: "modelUsage" as const, value: { model: "models/demo/bench-model", inputTokens: 100n, outputTokens: 50n } } });

function frame(i: number): Buffer {
  const bytes =
    batch > 1
      ? toBinary(BatchRecordUsageRequestSchema, create(BatchRecordUsageRequestSchema, { parent: "accounts/demo", requests: Array.from({ length: batch }, (_, k) => usage(i * batch + k)) }))
      : toBinary(RecordUsageRequestSchema, create(RecordUsageRequestSchema, { parent: "accounts/demo", ...usage(i) }));
  const f = Buffer.allocUnsafe(5 + bytes.length);
  f[0] = 0;
  f.writeUInt32BE(bytes.length, 1);
  f.set(bytes, 5);
  return f;
}

/** One call; resolves with the grpc-status (from the trailers, or the headers of a trailers-only answer). */
function call(session: http2.ClientHttp2Session, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    let status = "";
    let message = "";
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", "x-api-key": key });
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) {
        status = String(h["grpc-status"]);
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      }
    };
    req.on("response", take);
    req.on("trailers", take);
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => batch > 1 && chunks.push(d));
    req.on("end", () => {
      if (status !== "0") return resolve(`${status || "no status"} ${message}`);
      if (batch > 1) {
        const body = Buffer.concat(chunks);
        const res = fromBinary(BatchRecordUsageResponseSchema, body.subarray(5, 5 + body.readUInt32BE(1)));
        const bad = res.results.find((r) => r.result.case !== "response");
        if (bad || res.results.length !== batch) return resolve(`item ${bad?.result.case === "error" ? bad.result.value.message : "missing"}`);
      }
      resolve("0");
    });
    req.on("error", (err) => resolve(`error ${err.message}`));
    req.end(body);
  });
}

let t0 = 0;
async function worker(w: number) {
  const session = sessions[w % conns];
  for (;;) {
    const i = next++;
    if (i >= calls) return;
    if (rate) {
      const due = t0 + (i / rate) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const body = frame(i);
    const s = performance.now();
    const status = await call(session, body);
    if (status === "0") latencies.push(performance.now() - s);
    else {
      failed++;
      firstError ??= status;
    }
  }
}

await Promise.all(sessions.map((s) => new Promise((resolve, reject) => s.once("connect", resolve).once("error", reject))));
t0 = performance.now();
await Promise.all(Array.from({ length: conns * streams }, (_, w) => worker(w)));
const secs = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
console.log(JSON.stringify({ rps: (latencies.length * batch) / secs, p50: pct(50), p99: pct(99), failed, firstError }));
process.exit(0);
