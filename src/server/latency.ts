/**
 * Server-side latency histograms per method and protocol: how long each call
 * took inside this process, from the outermost interceptor in to its answer
 * (errors included). Measured here, p50/p99 do not depend on a load
 * generator that shares the cores. A plain in-process histogram with
 * log-spaced buckets (8 per doubling: a percentile is exact to within ~9%),
 * constant memory per method; a metrics exporter can read `snapshot()`.
 */
import type { Interceptor } from "@connectrpc/connect";
import { protocolOf, rpcPath } from "./metrics.js";

/** The same protocol labels as /metrics (grpc, grpc_web, connect). */
export { protocolOf };

/** Buckets per doubling of the latency. */
const PER_DOUBLING = 8;
/** Bucket 0 holds everything up to 1 µs; the last, everything above ~2^27 µs (~134 s). */
const BUCKETS = 27 * PER_DOUBLING + 1;

/** The upper bound of bucket `i`, µs. */
const upperUs = (i: number) => 2 ** (i / PER_DOUBLING);

function bucketOf(us: number): number {
  if (!(us > 1)) return 0;
  return Math.min(BUCKETS - 1, Math.ceil(Math.log2(us) * PER_DOUBLING));
}

/** One method's and protocol's latencies. */
export class Histogram {
  private readonly counts = new Uint32Array(BUCKETS);
  count = 0;
  sumMs = 0;
  maxMs = 0;

  record(ms: number): void {
    this.counts[bucketOf(ms * 1000)]++;
    this.count++;
    this.sumMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** The latency at or below which `p` percent of calls finished, ms (a bucket's upper bound, capped at the max seen). */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(upperUs(i) / 1000, this.maxMs);
    }
    return this.maxMs;
  }

  /** Cumulative counts at each bucket's upper bound (for an exporter's `le` buckets). */
  buckets(): { leMs: number; count: number }[] {
    const out: { leMs: number; count: number }[] = [];
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (this.counts[i]) out.push({ leMs: upperUs(i) / 1000, count: seen });
    }
    return out;
  }
}

export interface LatencySummary {
  method: string;
  protocol: string;
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

/** Histograms keyed by method (`formstate.v1.UsageService/RecordUsage`) and protocol (grpc, grpc-web, connect). */
export class LatencyHistograms {
  private readonly byKey = new Map<string, { method: string; protocol: string; h: Histogram }>();
  /** The same histograms by method, then protocol: no key string built per call. */
  private readonly byMethod = new Map<string, Map<string, Histogram>>();

  record(method: string, protocol: string, ms: number): void {
    let byProtocol = this.byMethod.get(method);
    if (!byProtocol) this.byMethod.set(method, (byProtocol = new Map()));
    let h = byProtocol.get(protocol);
    if (!h) {
      h = new Histogram();
      byProtocol.set(protocol, h);
      this.byKey.set(`${method} ${protocol}`, { method, protocol, h });
    }
    h.record(ms);
  }

  histogram(method: string, protocol: string): Histogram | undefined {
    return this.byKey.get(`${method} ${protocol}`)?.h;
  }

  snapshot(): LatencySummary[] {
    return [...this.byKey.values()].map(({ method, protocol, h }) => ({
      method,
      protocol,
      count: h.count,
      p50Ms: h.percentile(50),
      p90Ms: h.percentile(90),
      p99Ms: h.percentile(99),
      maxMs: h.maxMs,
      meanMs: h.count ? h.sumMs / h.count : NaN,
    }));
  }

  reset(): void {
    this.byKey.clear();
    this.byMethod.clear();
  }
}

/** The process's histograms (what the server records into by default). */
export const serverLatency = new LatencyHistograms();

/** Times every call (outermost interceptor), answered or failed. */
export function createLatencyInterceptor(histograms: LatencyHistograms = serverLatency): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    try {
      return await next(req);
    } finally {
      histograms.record(rpcPath(req.method), protocolOf(req.header.get("content-type")), performance.now() - started);
    }
  };
}
