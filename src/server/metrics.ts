/**
 * Prometheus metrics at `GET /metrics` (prom-client), one registry per app:
 *
 * - RED per method and protocol: `formstate_rpc_requests_total{method,protocol,code}`
 *   (errors are the non-OK codes) and `formstate_rpc_duration_seconds{method,protocol}`;
 *   calls refused before the interceptors (bad framing, size, 415) count too;
 * - `formstate_rate_limit_decisions_total{decision}` (allowed / limited);
 * - `formstate_credits_refused_total{reason}`: calls refused for money (payment required);
 * - `formstate_ledger_debits_total`, `formstate_ledger_debited_micros_total` (and credits);
 * - `formstate_outbox_pending`, `formstate_outbox_lag_seconds`: the Stripe meter outbox;
 * - `formstate_redis_degraded` (1 while Redis is configured but unreachable);
 * - `formstate_db_pool_connections{state}` (PostgreSQL);
 * - Node's process metrics (`process_*`, `nodejs_*`).
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { App } from "../app.js";
import { PAYMENT_REQUIRED_HEADER } from "../billing/payment-required.js";
import { ledgerCounts } from "../ledger/ledger-metrics.js";
import type { ProtocolFailure } from "./protocol-failure.js";

const codeName = (c: Code) => Code[c]?.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase() ?? String(c);

const rpcPaths = new WeakMap<DescMethod, string>();

/** `formstate.v1.ApiKeyService/VerifyApiKey`: a method's label, made once per method. */
export function rpcPath(method: DescMethod): string {
  let path = rpcPaths.get(method);
  if (path === undefined) rpcPaths.set(method, (path = `${method.parent.typeName}/${method.name}`));
  return path;
}

/** The label sets every answered call of a method and protocol uses, made once (prom-client keeps them as given). */
interface CallLabels {
  method: string;
  protocol: string;
  ok: { method: string; protocol: string; code: string };
  duration: { method: string; protocol: string };
}

/** grpc, grpc_web or connect, from the content type. */
export function protocolOf(contentType: string | null | undefined): string {
  if (!contentType) return "connect";
  if (contentType.startsWith("application/grpc-web")) return "grpc_web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  return "connect";
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"method" | "protocol" | "code">;
  private readonly duration: Histogram<"method" | "protocol">;
  private readonly rateLimit: Counter<"decision">;
  private readonly refused: Counter<"reason">;
  private readonly callLabels = new WeakMap<DescMethod, Map<string, CallLabels>>();
  private readonly decisionLabels = { allowed: { decision: "allowed" }, limited: { decision: "limited" } };

  constructor(app: Pick<App, "database" | "sharedState" | "clock" | "events">) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: "formstate_rpc_requests_total", help: "RPCs answered, by method, protocol and status code (errors are the non-OK codes).", labelNames: ["method", "protocol", "code"], registers });
    this.duration = new Histogram({
      name: "formstate_rpc_duration_seconds",
      help: "RPC latency from the interceptors' start to the answer, by method and protocol.",
      labelNames: ["method", "protocol"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.rateLimit = new Counter({ name: "formstate_rate_limit_decisions_total", help: "Rate-limit decisions: allowed or limited.", labelNames: ["decision"], registers });
    this.refused = new Counter({ name: "formstate_credits_refused_total", help: "Calls refused because money could not pay for them (payment required), by reason.", labelNames: ["reason"], registers });
    const counter = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    counter("formstate_ledger_debits_total", "Ledger debits booked by this process.", () => ledgerCounts.debits);
    counter("formstate_ledger_debited_micros_total", "Micro-USD debited from ledgers by this process.", () => ledgerCounts.debitMicros);
    counter("formstate_ledger_credits_total", "Ledger credits (grants, purchases, refunds) booked by this process.", () => ledgerCounts.credits);
    new Gauge({
      name: "formstate_redis_degraded",
      help: "1 while Redis is configured but not connected (limits and caches are local meanwhile), else 0.",
      registers,
      collect() {
        this.set(app.sharedState && app.sharedState.status() !== "connected" ? 1 : 0);
      },
    });
    new Gauge({
      name: "formstate_event_streams",
      help: "WatchAccountEvents streams open on this instance.",
      registers,
      collect() {
        this.set(app.events.watchingTotal());
      },
    });
    new Gauge({
      name: "formstate_db_pool_connections",
      help: "PostgreSQL pool connections by state (total, idle, waiting clients).",
      labelNames: ["state"],
      registers,
      collect() {
        const s = app.database.poolStats?.();
        if (!s) return;
        this.set({ state: "total" }, s.total);
        this.set({ state: "idle" }, s.idle);
        this.set({ state: "waiting" }, s.waiting);
      },
    });
    const outbox = async () => {
      const row = await app.database.db
        .selectFrom("meter_outbox")
        .where("status", "=", "pending")
        .select((eb) => [eb.fn.countAll<number>().as("n"), eb.fn.min("event_time").as("oldest")])
        .executeTakeFirst();
      return { pending: Number(row?.n ?? 0), oldest: row?.oldest == null ? undefined : Number(row.oldest) };
    };
    new Gauge({
      name: "formstate_outbox_pending",
      help: "Metered usage events waiting in the outbox to be sent to Stripe.",
      registers,
      async collect() {
        this.set((await outbox()).pending);
      },
    });
    new Gauge({
      name: "formstate_outbox_lag_seconds",
      help: "Age of the oldest usage event still waiting in the outbox (0 when none).",
      registers,
      async collect() {
        const { oldest } = await outbox();
        this.set(oldest === undefined ? 0 : Math.max(0, (app.clock.now() - oldest) / 1000));
      },
    });
  }

  /** The interceptor counting every call the interceptors see: outermost, so it times the whole chain. */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      const labels = this.labelsOf(req.method, protocolOf(req.header.get("content-type")));
      const started = performance.now();
      try {
        const res = await next(req);
        this.requests.inc(labels.ok);
        this.duration.observe(labels.duration, (performance.now() - started) / 1000);
        return res;
      } catch (err) {
        const e = ConnectError.from(err);
        this.observe(labels.method, labels.protocol, e.code, started);
        if (e.metadata.has(PAYMENT_REQUIRED_HEADER)) this.refused.inc({ reason: e.metadata.get(PAYMENT_REQUIRED_HEADER) ?? "unknown" });
        throw err;
      }
    };
  }

  private labelsOf(method: DescMethod, protocol: string): CallLabels {
    let byProtocol = this.callLabels.get(method);
    if (!byProtocol) this.callLabels.set(method, (byProtocol = new Map()));
    let labels = byProtocol.get(protocol);
    if (!labels) {
      const m = rpcPath(method);
      labels = { method: m, protocol, ok: { method: m, protocol, code: "OK" }, duration: { method: m, protocol } };
      byProtocol.set(protocol, labels);
    }
    return labels;
  }

  private observe(method: string, protocol: string, code: Code | 0, started: number): void {
    this.requests.inc({ method, protocol, code: code === 0 ? "OK" : codeName(code) });
    this.duration.observe({ method, protocol }, (performance.now() - started) / 1000);
  }

  /** A call refused before the interceptors ran. */
  protocolFailure(f: ProtocolFailure): void {
    this.requests.inc({ method: rpcPath(f.method), protocol: protocolOf(f.contentType), code: codeName(f.code) });
  }

  rateLimitDecision(allowed: boolean): void {
    this.rateLimit.inc(allowed ? this.decisionLabels.allowed : this.decisionLabels.limited);
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
