/**
 * `GET /metrics` scraped with a real HTTP client and parsed: per-method RED
 * counters and latency histograms by protocol move after real calls (OK,
 * errors, a malformed body refused before the interceptors), rate-limit
 * decisions (anonymous callers limited per IP), ledger credits and debits
 * after real usage, refusals for money, and the outbox, Redis and process
 * gauges are there.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

type Samples = Map<string, number>;

/** Prometheus text format -> `name{labels}` -> value (labels as written, sorted by prom-client). */
function parse(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const sum = (s: Samples, prefix: string, ...has: string[]) =>
  [...s.entries()].filter(([k]) => k.startsWith(prefix) && has.every((h) => k.includes(h))).reduce((a, [, v]) => a + v, 0);

describe("/metrics", () => {
  let t: TestServer;
  let token: string;
  const scrape = async () => {
    const res = await fetch(`${t.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    return parse(await res.text());
  };

  beforeAll(async () => {
    t = await startTestServer({ FORMSTATE_ANON_RATE_LIMIT_RPS: "1", FORMSTATE_ANON_RATE_LIMIT_BURST: "2" });
    token = await t.token({ projectId: "metrics", role: "admin" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("counts calls by method, protocol and code, and times them", async () => {
    const before = await scrape();
    const accounts = t.client(AccountService, t.grpc(token));
    await accounts.createAccount({ account: { displayName: "metrics" } });
    await accounts.getAccount({ name: "accounts/metrics" });
    await expect(t.client(AccountService, t.connect()).getAccount({ name: "accounts/metrics" })).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unauthenticated);
    // A body that does not parse: refused before the interceptors, counted all the same.
    const bad = await fetch(`${t.url}/formstate.v1.AccountService/GetAccount`, { method: "POST", headers: { "content-type": "application/proto" }, body: new Uint8Array([0x0f]) });
    expect(bad.status).toBe(400);
    const after = await scrape();

    const get = 'method="formstate.v1.AccountService/GetAccount"';
    expect(sum(after, "formstate_rpc_requests_total", get, 'protocol="grpc"', 'code="OK"') - sum(before, "formstate_rpc_requests_total", get, 'protocol="grpc"', 'code="OK"')).toBe(1);
    expect(sum(after, "formstate_rpc_requests_total", get, 'protocol="connect"', 'code="UNAUTHENTICATED"')).toBe(1);
    expect(sum(after, "formstate_rpc_requests_total", get, 'protocol="connect"', 'code="INVALID_ARGUMENT"')).toBe(1);
    expect(sum(after, "formstate_rpc_duration_seconds_count", get, 'protocol="grpc"')).toBeGreaterThanOrEqual(1);
    expect(sum(after, "formstate_rpc_duration_seconds_bucket", get, 'protocol="grpc"', 'le="+Inf"')).toBeGreaterThanOrEqual(1);
    for (const name of ["formstate_outbox_pending", "formstate_outbox_lag_seconds", "formstate_redis_degraded", "process_resident_memory_bytes", "nodejs_eventloop_lag_seconds"]) {
      expect([...after.keys()].some((k) => k.startsWith(name)), name).toBe(true);
    }
    expect(after.get("formstate_redis_degraded")).toBe(0);
  });

  it("counts rate-limit decisions, and anonymous callers are limited per IP", async () => {
    const before = await scrape();
    const billing = t.client(BillingService, t.connect());
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      outcomes.push(await billing.listPlans({}).then(() => "ok", (e) => Code[ConnectError.from(e).code]));
    }
    expect(outcomes.slice(0, 2)).toEqual(["ok", "ok"]);
    expect(outcomes).toContain("ResourceExhausted");
    const after = await scrape();
    expect(sum(after, "formstate_rate_limit_decisions_total", 'decision="limited"') - sum(before, "formstate_rate_limit_decisions_total", 'decision="limited"')).toBeGreaterThanOrEqual(1);
    expect(sum(after, "formstate_rate_limit_decisions_total", 'decision="allowed"') - sum(before, "formstate_rate_limit_decisions_total", 'decision="allowed"')).toBeGreaterThanOrEqual(2);
  });

  it("counts ledger debits after real usage, and refusals for money", async () => {
    const admin = createFormstateClient({ baseUrl: t.url, token });
    await admin.models.createModel({ modelId: "metrics/m-1", model: { inputPriceMicrosPerMillion: 1_000_000n } });
    await admin.models.createModel({ modelId: "metrics/m-2", model: { inputPriceMicrosPerMillion: 1_000_000_000n } });
    const before = await scrape();
    await admin.usage.recordUsage({ parent: "accounts/metrics", requestId: "m-1", usage: { case: "modelUsage", value: { model: "models/metrics/m-1", inputTokens: 1000n } } });
    // $1,000 per million tokens: 10 million tokens is $10,000, far past the Free plan's credits.
    const refused = await admin.usage.recordUsage({ parent: "accounts/metrics", requestId: "m-2", usage: { case: "modelUsage", value: { model: "models/metrics/m-2", inputTokens: 10_000_000n } } }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(refused?.code).toBe(Code.FailedPrecondition);
    const after = await scrape();
    expect(sum(after, "formstate_ledger_debits_total") - sum(before, "formstate_ledger_debits_total")).toBe(1);
    expect(sum(after, "formstate_ledger_debited_micros_total") - sum(before, "formstate_ledger_debited_micros_total")).toBe(1000);
    // The month's included credits were granted on first use: a ledger credit.
    expect(sum(after, "formstate_ledger_credits_total")).toBeGreaterThan(sum(before, "formstate_ledger_credits_total"));
    expect(sum(after, "formstate_credits_refused_total") - sum(before, "formstate_credits_refused_total")).toBe(1);
  });
});
