/**
 * Spend alerts end to end: rules created over the API, usage recorded by
 * real clients, the watcher run (its check is called directly so "not yet"
 * is decidable), and webhooks received by a local HTTP endpoint. Shows: one
 * delivery per crossing with a signature the client's verifier accepts; a
 * forged, tampered or replayed webhook refused by that verifier; an endpoint
 * that is down and then up receives the webhook once, with every attempt in
 * the delivery log; a new month re-arms an account alert; a key's
 * percentage of its spend cap; access and input rules; a test-mode
 * project's alerts watch its sandbox and say `livemode: false`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { ApiKeyService, KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { AlertDeliveryState, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { WebhookSignatureError, constructWebhookEvent, createFormstateClient, verifyWebhookSignature } from "../../src/client/node.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

interface Received {
  body: string;
  signature: string;
  eventId: string;
  status: number;
}

/** A customer's webhook endpoint: records every request; answers `failNext` times with 503 first. */
async function startReceiver() {
  const state = { received: [] as Received[], failNext: 0, url: "", close: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const status = state.failNext > 0 ? (state.failNext--, 503) : 200;
      state.received.push({ body: Buffer.concat(chunks).toString("utf8"), signature: String(req.headers["formstate-signature"] ?? ""), eventId: String(req.headers["formstate-event-id"] ?? ""), status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  state.close = () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r())));
  return state;
}

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
const clock = new ManualClock(Date.UTC(2026, 11, 2, 9));
const P = "alerts";
let ts: TestServer;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let n = 0;

const nowSec = () => Math.floor(clock.now() / 1000);
const delivered = () => receiver.received.filter((r) => r.status === 200);

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function clients() {
  const admin = await ts.token({ projectId: P, role: "admin" });
  const dev = await ts.token({ projectId: P, role: "developer" });
  return { admin: createClient(UsageService, ts.connect(admin)), dev: createClient(UsageService, ts.connect(dev)), keys: createClient(ApiKeyService, ts.connect(admin)) };
}

async function spend(micros: number, apiKey?: string) {
  const { dev } = await clients();
  await dev.recordUsage({ parent: `accounts/${P}`, requestId: `r${++n}`, apiKey, usage: { case: "modelUsage", value: { model: `models/${P}/m`, inputTokens: BigInt(micros) } } });
}

async function noDeliveriesPending() {
  const { dev } = await clients();
  const { alertDeliveries } = await dev.listAlertDeliveries({ parent: `accounts/${P}`, pageSize: 1000 });
  return alertDeliveries.every((d) => d.state !== AlertDeliveryState.PENDING) ? alertDeliveries : undefined;
}

beforeAll(async () => {
  receiver = await startReceiver();
  // The watcher is driven by hand (check()); the outbox sender runs on its own, every 25 ms.
  ts = await startTestServer(
    { FORMSTATE_ALERT_CHECK_INTERVAL_MS: "3600000", FORMSTATE_ALERT_CHECK_AFTER_DEBIT_MS: "0", FORMSTATE_WEBHOOK_SEND_INTERVAL_MS: "25", FORMSTATE_WEBHOOK_BACKOFF_MS: "1000", FORMSTATE_WEBHOOK_BACKOFF_MAX_MS: "4000" },
    { plans, clock },
  );
  const admin = await ts.token({ projectId: P, role: "admin" });
  const c = createFormstateClient({ baseUrl: ts.url, token: admin });
  await c.accounts.createAccount({ account: {} });
  await c.models.createModel({ modelId: `${P}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } }); // 1 micro-USD per token
  await c.billing.addCredits({ parent: `accounts/${P}`, amountMicros: 1_000_000n, reason: "test", requestId: "g1" });
}, 60_000);
afterAll(async () => {
  await ts?.close();
  await receiver?.close();
});

describe("an account alert", () => {
  let secret = "";
  let alertName = "";

  it("fires once when spend crosses it, as a webhook the client's verifier accepts", async () => {
    const { admin } = await clients();
    const res = await admin.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { threshold: { case: "thresholdMicros", value: 5_000n }, endpointUrl: receiver.url, description: "5 cents" } });
    secret = res.signingSecret;
    alertName = res.spendAlert!.name;
    expect(secret).toMatch(/^whsec_/);
    await spend(3_000);
    expect(await ts.app.alerts.check()).toBe(0);
    await spend(2_500);
    expect(await ts.app.alerts.check()).toBe(1);
    expect(await ts.app.alerts.check()).toBe(0); // fired for this month already
    await until("the webhook", () => delivered().length === 1);
    const got = delivered()[0];
    const event = constructWebhookEvent(got.body, got.signature, secret, { nowSec: nowSec() });
    expect(event).toMatchObject({ type: "spend_alert.triggered", id: got.eventId, livemode: true, data: { spend_alert: alertName, account: `accounts/${P}`, period: "2026-12", threshold_micros: 5_000, spent_micros: 5_500 } });
    // More spend in the same month: no second webhook.
    await spend(10_000);
    expect(await ts.app.alerts.check()).toBe(0);
    const log = await until("an idle outbox", noDeliveriesPending);
    expect(log.filter((d) => d.spendAlert === alertName)).toHaveLength(1);
    expect(log[0]).toMatchObject({ state: AlertDeliveryState.DELIVERED, attempts: 1, lastStatusCode: 200, eventType: "spend_alert.triggered", payload: got.body });
    expect(delivered()).toHaveLength(1);
  });

  it("the verifier refuses forged, tampered and replayed webhooks", () => {
    const got = delivered()[0];
    expect(() => verifyWebhookSignature(got.body, got.signature, secret, { nowSec: nowSec() })).not.toThrow();
    expect(() => verifyWebhookSignature(got.body, got.signature, "whsec_forged", { nowSec: nowSec() })).toThrow(WebhookSignatureError);
    expect(() => verifyWebhookSignature(got.body.replace("5500", "9999"), got.signature, secret, { nowSec: nowSec() })).toThrow(/does not match/);
    // The same webhook captured and sent again ten minutes later: refused by its signed time.
    expect(() => verifyWebhookSignature(got.body, got.signature, secret, { nowSec: nowSec() + 600 })).toThrow(/tolerance/);
    // Re-dating it needs a new MAC, which needs the secret.
    const t = nowSec() + 600;
    const redated = got.signature.replace(/t=\d+/, `t=${t}`);
    expect(() => verifyWebhookSignature(got.body, redated, secret, { nowSec: t })).toThrow(/does not match/);
    expect(() => verifyWebhookSignature(got.body, undefined, secret)).toThrow(/missing/);
    expect(() => verifyWebhookSignature(got.body, "v1=abc", secret)).toThrow(/malformed/);
  });

  it("fires again in the next month", async () => {
    clock.set(Date.UTC(2027, 0, 1, 0, 5));
    expect(await ts.app.alerts.check()).toBe(0); // nothing spent in January yet
    await spend(6_000);
    expect(await ts.app.alerts.check()).toBe(1);
    await until("January's webhook", () => delivered().length === 2);
    const event = constructWebhookEvent(delivered()[1].body, delivered()[1].signature, secret, { nowSec: nowSec() });
    expect(event.data).toMatchObject({ period: "2027-01", spent_micros: 6_000 });
    const { admin } = await clients();
    await admin.deleteSpendAlert({ name: alertName });
  });
});

describe("an endpoint that is down, then up", () => {
  it("gets the webhook exactly once, after retries with backoff, all in the delivery log", async () => {
    const { admin, dev } = await clients();
    const res = await admin.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { threshold: { case: "thresholdMicros", value: 1n }, endpointUrl: receiver.url } });
    const before = receiver.received.length;
    receiver.failNext = 2;
    expect(await ts.app.alerts.check()).toBe(1); // January's spend is already over 1 micro-USD
    // First attempt answered 503: the log says so and it waits for its retry.
    const failing = await until("the first failed attempt", async () => {
      const { alertDeliveries } = await dev.listAlertDeliveries({ parent: `accounts/${P}` });
      const d = alertDeliveries.find((x) => x.spendAlert === res.spendAlert!.name);
      return d && d.attempts === 1 ? d : undefined;
    });
    expect(failing).toMatchObject({ state: AlertDeliveryState.PENDING, lastStatusCode: 503, lastError: "the endpoint answered 503" });
    expect(failing.nextAttemptTime).toBeDefined();
    // Backoff is on the server's clock: move it past each retry delay.
    const attempts = async (n: number) => {
      const { alertDeliveries } = await dev.listAlertDeliveries({ parent: `accounts/${P}` });
      return alertDeliveries.find((x) => x.spendAlert === res.spendAlert!.name)?.attempts === n;
    };
    clock.advance(2_000);
    await until("the second attempt", () => receiver.received.length === before + 2);
    // Its retry time is set from the clock when the attempt is recorded: move the clock only after that.
    await until("the second attempt recorded", () => attempts(2));
    clock.advance(5_000);
    await until("the third attempt", () => receiver.received.length === before + 3);
    const log = await until("an idle outbox", noDeliveriesPending);
    const d = log.find((x) => x.spendAlert === res.spendAlert!.name)!;
    expect(d).toMatchObject({ state: AlertDeliveryState.DELIVERED, attempts: 3, lastStatusCode: 200, lastError: "" });
    const mine = receiver.received.slice(before);
    expect(mine.map((r) => r.status)).toEqual([503, 503, 200]);
    expect(new Set(mine.map((r) => r.eventId)).size).toBe(1); // one event, redelivered
    // Each attempt is signed afresh and verifies.
    for (const r of mine) constructWebhookEvent(r.body, r.signature, res.signingSecret, { nowSec: nowSec() });
    clock.advance(60_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.received.length).toBe(before + 3);
    await admin.deleteSpendAlert({ name: res.spendAlert!.name });
  });
});

describe("a key's alert at a percentage of its spend cap", () => {
  it("fires when the key's spend reaches the share, once per cap", async () => {
    const { admin, keys } = await clients();
    const key = await keys.createApiKey({ parent: `accounts/${P}`, apiKey: { displayName: "capped", scopes: [Scope.READ, Scope.WRITE], spendCapMicros: 10_000n } });
    const res = await admin.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { apiKey: key.apiKey!.name, threshold: { case: "thresholdPercent", value: 80 }, endpointUrl: receiver.url } });
    const before = delivered().length;
    await spend(7_999, key.apiKey!.name);
    expect(await ts.app.alerts.check()).toBe(0);
    await spend(1, key.apiKey!.name);
    expect(await ts.app.alerts.check()).toBe(1);
    await until("the key's webhook", () => delivered().length === before + 1);
    const event = constructWebhookEvent(delivered()[before].body, delivered()[before].signature, res.signingSecret, { nowSec: nowSec() });
    expect(event.data).toMatchObject({ api_key: key.apiKey!.name, period: "cap:10000", threshold_percent: 80, base_micros: 10_000, spent_micros: 8_000 });
    expect(await ts.app.alerts.check()).toBe(0);
    await admin.deleteSpendAlert({ name: res.spendAlert!.name });
  });
});

describe("managing alerts", () => {
  it("lists without secrets, deletes, and refuses what it must", async () => {
    const { admin, dev } = await clients();
    const created = await admin.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { threshold: { case: "thresholdPercent", value: 90 }, endpointUrl: "https://example.com/hook" } });
    const { spendAlerts } = await dev.listSpendAlerts({ parent: `accounts/${P}` });
    expect(spendAlerts.map((a) => a.name)).toContain(created.spendAlert!.name);
    expect(JSON.stringify(spendAlerts, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain("whsec_");
    await expectCode(dev.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { threshold: { case: "thresholdMicros", value: 1n }, endpointUrl: "https://example.com/h" } }), Code.PermissionDenied);
    await expectCode(admin.createSpendAlert({ parent: "accounts/someone-else", spendAlert: { threshold: { case: "thresholdMicros", value: 1n }, endpointUrl: "https://example.com/h" } }), Code.NotFound);
    await expectCode(admin.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { threshold: { case: "thresholdMicros", value: 1n }, endpointUrl: "ftp://example.com/h" } }), Code.InvalidArgument, /endpoint_url/);
    await expectCode(admin.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { endpointUrl: "https://example.com/h" } }), Code.InvalidArgument);
    await expectCode(admin.createSpendAlert({ parent: `accounts/${P}`, spendAlert: { apiKey: `accounts/${P}/apiKeys/nope`, threshold: { case: "thresholdMicros", value: 1n }, endpointUrl: "https://example.com/h" } }), Code.NotFound);
    await admin.deleteSpendAlert({ name: created.spendAlert!.name });
    await expectCode(admin.deleteSpendAlert({ name: created.spendAlert!.name }), Code.NotFound);
    await expectCode(dev.listAlertDeliveries({ parent: "accounts/someone-else" }), Code.NotFound);
  });
});

describe("a test-mode project's alert", () => {
  it("watches the sandbox and fires a webhook marked livemode: false", async () => {
    const T = "alerts-sandbox";
    const token = await ts.token({ projectId: T, role: "admin" });
    const c = createFormstateClient({ baseUrl: ts.url, token });
    await c.accounts.createAccount({ account: { environment: KeyEnvironment.TEST } });
    await c.models.createModel({ modelId: `${T}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
    const res = await c.usage.createSpendAlert({ parent: `accounts/${T}`, spendAlert: { threshold: { case: "thresholdMicros", value: 5_000n }, endpointUrl: receiver.url } });
    const ours = () => delivered().filter((r) => r.body.includes(`"accounts/${T}"`));
    const use = (requestId: string, tokens: number) => c.usage.recordUsage({ parent: `accounts/${T}`, requestId, usage: { case: "modelUsage", value: { model: `models/${T}/m`, inputTokens: BigInt(tokens) } } });
    await use("s1", 4_000);
    await ts.app.alerts.check();
    await use("s2", 2_000);
    await ts.app.alerts.check();
    await until("the sandbox alert's webhook", () => ours().length === 1);
    const event = constructWebhookEvent(ours()[0].body, ours()[0].signature, res.signingSecret, { nowSec: nowSec() });
    expect(event).toMatchObject({ type: "spend_alert.triggered", livemode: false, data: { spend_alert: res.spendAlert!.name, account: `accounts/${T}`, threshold_micros: 5_000, spent_micros: 6_000 } });
    await ts.app.alerts.check();
    expect(ours()).toHaveLength(1);
  });
});
