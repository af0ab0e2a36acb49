/**
 * A Node load generator in its own process for RecordUsage, where every call
 * needs its own request_id (h2load repeats one body). CONNS HTTP/2
 * connections x STREAMS concurrent calls, CALLS in all, optionally paced to
 * RATE calls/s. Prints {rps, p50, p99, failed} as JSON.
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UsageService } from "../gen/formstate/v1/usage_service_pb.js";

const conns = Number(process.env.CONNS ?? 8);
const streams = Number(process.env.STREAMS ?? 10);
const calls = Number(process.env.CALLS ?? 10_000);
const rate = Number(process.env.RATE || 0);
const key = process.env.API_KEY!;
const clients = Array.from({ length: conns }, () =>
  createClient(UsageService, createGrpcTransport({ baseUrl: process.env.BASE_URL!, interceptors: [(next) => (req) => (req.header.set("x-api-key", key), next(req))] })),
);
const latencies: number[] = [];
let next = 0;
let failed = 0;
const t0 = performance.now();
const run = process.pid.toString(36) + Date.now().toString(36);

async function worker(w: number) {
  const client = clients[w % conns];
  for (;;) {
    const i = next++;
    if (i >= calls) return;
    if (rate) {
      const due = t0 + (i / rate) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const s = performance.now();
    try {
      await client.recordUsage({ parent: "accounts/demo", requestId: `${run}-${i}`, usage: { case: "modelUsage", value: { model: "models/bench/model", inputTokens: 100n, outputTokens: 50n } } });
      latencies.push(performance.now() - s);
    } catch {
      failed++;
    }
  }
}

await Promise.all(Array.from({ length: conns * streams }, (_, w) => worker(w)));
const secs = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
console.log(JSON.stringify({ rps: latencies.length / secs, p50: pct(50), p99: pct(99), failed }));
process.exit(0);
