/**
 * Server-side latency histograms: percentiles within a bucket's width of the
 * exact ones, and every call (answered or failed) counted per method and
 * protocol by a real server, readable at /debug/latency when enabled.
 */
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { Histogram, LatencyHistograms, type LatencySummary, protocolOf, serverLatency } from "../../src/server/latency.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

describe("Histogram", () => {
  it("percentiles are within one bucket (~9%) above the exact ones, never above the max", () => {
    // A seeded spread from 20 µs to 200 ms.
    let x = 7;
    const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const values = Array.from({ length: 5000 }, () => 0.02 * 10 ** (rand() * 4));
    const h = new Histogram();
    for (const v of values) h.record(v);
    const sorted = [...values].sort((a, b) => a - b);
    for (const p of [50, 90, 99, 99.9]) {
      const exact = sorted[Math.ceil((p / 100) * sorted.length) - 1];
      const got = h.percentile(p);
      expect(got).toBeGreaterThanOrEqual(exact);
      expect(got).toBeLessThanOrEqual(exact * 2 ** (1 / 8) + 1e-9);
    }
    expect(h.percentile(100)).toBe(sorted.at(-1));
    expect(h.count).toBe(5000);
    expect(new Histogram().percentile(50)).toBeNaN();
  });

  it("keys by method and protocol", () => {
    const hs = new LatencyHistograms();
    hs.record("a/B", "grpc", 1);
    hs.record("a/B", "grpc", 3);
    hs.record("a/B", "connect", 2);
    expect(hs.snapshot().map((s) => [s.method, s.protocol, s.count])).toEqual([["a/B", "grpc", 2], ["a/B", "connect", 1]]);
    expect([protocolOf("application/grpc"), protocolOf("application/grpc+proto"), protocolOf("application/grpc-web+proto"), protocolOf("application/json"), protocolOf(null)]).toEqual(["grpc", "grpc", "grpc_web", "connect", "connect"]);
  });
});

describe("a real server", () => {
  let ts: TestServer;
  beforeAll(async () => {
    process.env.FORMSTATE_DEBUG_LATENCY = "1";
    ts = await startTestServer();
  });
  afterAll(async () => {
    delete process.env.FORMSTATE_DEBUG_LATENCY;
    await ts?.close();
  });

  it("records every call per method and protocol, failures included", async () => {
    serverLatency.reset();
    const token = await ts.token({ projectId: "lat", role: "admin" });
    await createClient(AccountService, ts.grpc(token)).createAccount({ account: {} });
    for (let i = 0; i < 5; i++) await createClient(AccountService, ts.grpc(token)).getAccount({ name: "accounts/lat" });
    for (let i = 0; i < 3; i++) await createClient(AccountService, ts.connect(token)).getAccount({ name: "accounts/lat" });
    await expectCode(createClient(AccountService, ts.grpc()).getAccount({ name: "accounts/lat" }), Code.Unauthenticated);
    const res = await fetch(`${ts.url}/debug/latency?reset=1`);
    const snap = (await res.json()) as LatencySummary[];
    const get = (protocol: string) => snap.find((s) => s.method === "formstate.v1.AccountService/GetAccount" && s.protocol === protocol);
    expect(get("grpc")?.count).toBe(6);
    expect(get("connect")?.count).toBe(3);
    expect(get("grpc")!.p99Ms).toBeGreaterThan(0);
    expect(get("grpc")!.p50Ms).toBeLessThanOrEqual(get("grpc")!.p99Ms);
    expect(snap.find((s) => s.method === "formstate.v1.AccountService/CreateAccount")?.count).toBe(1);
    // Read with reset: the next read starts empty (of methods; background writes may time storage stages meanwhile).
    const after = (await (await fetch(`${ts.url}/debug/latency`)).json()) as LatencySummary[];
    expect(after.filter((s) => s.protocol !== "internal")).toEqual([]);
  });

  it("times the write path's stages under protocol 'internal': group commit queue, transaction, durable, and WAL syncs", async () => {
    const token = await ts.token({ projectId: "stages", role: "admin" });
    await createClient(AccountService, ts.grpc(token)).createAccount({ account: {} });
    await createClient(BillingService, ts.grpc(token)).addCredits({ parent: "accounts/stages", amountMicros: 10_000_000n, reason: "t", requestId: "stages-credits" });
    await createClient(ModelService, ts.grpc(token)).createModel({ modelId: "stages/m", model: { displayName: "m", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 1_000_000n, visibility: ModelVisibility.PRIVATE } });
    await fetch(`${ts.url}/debug/latency?reset=1`);
    const usage = createClient(UsageService, ts.grpc(token));
    await Promise.all(Array.from({ length: 8 }, (_, i) => usage.recordUsage({ parent: "accounts/stages", requestId: `st-${i}`, usage: { case: "modelUsage", value: { model: "models/stages/m", inputTokens: 10n, outputTokens: 10n } } })));
    const snap = (await (await fetch(`${ts.url}/debug/latency?reset=1`)).json()) as LatencySummary[];
    const stage = (name: string) => snap.find((s) => s.method === name && s.protocol === "internal");
    expect(stage("group_commit/queue")?.count).toBe(8);
    expect(stage("group_commit/transaction")?.count).toBeGreaterThanOrEqual(1);
    expect(stage("group_commit/durable")?.count).toBe(stage("group_commit/transaction")?.count);
    // On SQLite (a file, full durability) each acknowledged batch waited for a WAL sync; PostgreSQL's COMMIT is durable itself.
    if (ts.app.database.dialect === "sqlite") expect(stage("sqlite/wal_sync")?.count).toBeGreaterThanOrEqual(stage("group_commit/transaction")!.count);
    else expect(stage("sqlite/wal_sync")).toBeUndefined();
    expect(snap.find((s) => s.method === "formstate.v1.UsageService/RecordUsage")?.count).toBe(8);
  });
});
