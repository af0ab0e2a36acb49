/**
 * A load generator in its own process for RecordUsage, where every call
 * needs its own request_id (h2load repeats one body). It speaks gRPC on
 * Node's http2 client directly (a prepared frame per call, the status read
 * from the trailers) so the generator, which shares the cores with the
 * server, costs as little as it can: Connect's client cost more CPU per call
 * than the server it measured. CONNS HTTP/2 connections x STREAMS concurrent
 * calls, CALLS in all, optionally paced to RATE calls/s. Prints
 * {rps, p50, p99, failed, firstError} as JSON.
 */
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { RecordUsageRequestSchema } from "../gen/formstate/v1/usage_service_pb.js";

const conns = Number(process.env.CONNS ?? 8);
const streams = Number(process.env.STREAMS ?? 10);
const calls = Number(process.env.CALLS ?? 10_000);
const rate = Number(process.env.RATE || 0);
const key = process.env.API_KEY!;
const baseUrl = process.env.BASE_URL!;
const path = "/formstate.v1.UsageService/RecordUsage";
const sessions = Array.from({ length: conns }, () => http2.connect(baseUrl));
const latencies: number[] = [];
let next = 0;
let failed = 0;
let firstError: string | undefined;
const run = process.pid.toString(36) + Date.now().toString(36);

function frame(i: number): Buffer {
  const bytes = toBinary(
    RecordUsageRequestSchema,
    create(RecordUsageRequestSchema, { parent: "accounts/demo", requestId: `${run}-${i}`, usage: { case: "modelUsage", value: { model: "models/bench/model", inputTokens: 100n, outputTokens: 50n } } }),
  );
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
    req.on("data", () => {});
    req.on("end", () => resolve(status === "0" ? "0" : `${status || "no status"} ${message}`));
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
console.log(JSON.stringify({ rps: latencies.length / secs, p50: pct(50), p99: pct(99), failed, firstError }));
process.exit(0);
