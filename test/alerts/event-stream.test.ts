/**
 * UsageService.WatchAccountEvents end to end (SQLite; PostgreSQL and Redis
 * with DATABASE_URL and REDIS_URL): a spend alert fired by the watcher
 * reaches streams opened over Connect, gRPC (Connect's transport and
 * @grpc/grpc-js) and gRPC-Web with the same facts and id as its webhook;
 * credits granted or bought with Checkout arrive once; heartbeats keep a
 * quiet stream alive; project B never sees A's events and cannot watch A; a
 * cancelled stream leaves no watcher behind; a revoked key or session ends
 * its stream with UNAUTHENTICATED and a demotion with PERMISSION_DENIED at
 * the next heartbeat; an account holds at most 100 streams on a server; the
 * check right after a debit fires an alert without the interval; server
 * shutdown ends streams at once.
 */
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Code, ConnectError, type Transport, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService, KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService, type WatchAccountEventsResponse } from "../../gen/formstate/v1/usage_service_pb.js";
import { MAX_WATCHERS } from "../../src/events/event-stream.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { FakeStripe, deliverEvent } from "../support/fake-stripe.js";
import { type TestServer, bearer, startTestServer } from "../support/test-server.js";

const root = join(import.meta.dirname, "../..");
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, apiKeyLimit: null, rateLimit: { requestsPerSecond: 10_000, burst: 10_000 } })));
const A = "events-a";
const B = "events-b";
const HEARTBEAT_MS = 150;
let ts: TestServer;
let n = 0;

/** A stream being read in the background: every message so far, and waiting for one that matches. */
function watch(transport: Transport, parent: string) {
  const abort = new AbortController();
  const got: WatchAccountEventsResponse[] = [];
  const state: { error?: ConnectError; ended: boolean } = { ended: false };
  const done = (async () => {
    try {
      for await (const m of createClient(UsageService, transport).watchAccountEvents({ parent }, { signal: abort.signal })) got.push(m);
    } catch (err) {
      state.error = ConnectError.from(err);
    } finally {
      state.ended = true;
    }
  })();
  return {
    got,
    state,
    done,
    cancel: () => abort.abort(),
    events: () => got.flatMap((m) => (m.kind.case === "event" ? [m.kind.value] : [])),
    heartbeats: () => got.filter((m) => m.kind.case === "heartbeat").length,
  };
}

async function until<T>(what: string, f: () => T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A gauge's value on /metrics. */
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${ts.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`${name} is not on /metrics`);
  return Number(line.split(" ")[1]);
}

async function setUp(project: string) {
  const admin = await ts.token({ projectId: project, role: "admin" });
  await createClient(AccountService, ts.connect(admin)).createAccount({ account: {} });
  await createClient(ModelService, ts.connect(admin)).createModel({ modelId: `${project}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } }); // 1 micro-USD a token
  await createClient(BillingService, ts.connect(admin)).addCredits({ parent: `accounts/${project}`, amountMicros: 1_000_000n, reason: "start", requestId: "start" });
  return admin;
}

async function spend(project: string, token: string, micros: number) {
  await createClient(UsageService, ts.connect(token)).recordUsage({ parent: `accounts/${project}`, requestId: `r${++n}`, usage: { case: "modelUsage", value: { model: `models/${project}/m`, inputTokens: BigInt(micros) } } });
}

let adminA = "";
let adminB = "";

beforeAll(async () => {
  // The alert watcher is driven by hand (check()); heartbeats every 150 ms.
  ts = await startTestServer({ FORMSTATE_ALERT_CHECK_INTERVAL_MS: "3600000", FORMSTATE_ALERT_CHECK_AFTER_DEBIT_MS: "0", FORMSTATE_EVENT_HEARTBEAT_MS: String(HEARTBEAT_MS) }, { plans });
  adminA = await setUp(A);
  adminB = await setUp(B);
}, 60_000);
afterAll(async () => {
  await ts?.close();
});

describe("WatchAccountEvents", () => {
  it("streams a fired spend alert to Connect, gRPC and gRPC-Web watchers with its webhook's facts, and B sees none of it", async () => {
    const parent = `accounts/${A}`;
    const streams = {
      connect: watch(ts.connect(adminA), parent),
      grpc: watch(ts.grpc(adminA), parent),
      "grpc-web": watch(createGrpcWebTransport({ baseUrl: ts.url, httpVersion: "1.1", interceptors: bearer(adminA) }), parent),
    };
    const onB = watch(ts.connect(adminB), `accounts/${B}`);
    // The first message is a heartbeat sent once the watch is in place.
    for (const s of [...Object.values(streams), onB]) await until("the first heartbeat", () => s.got.length > 0);
    for (const s of Object.values(streams)) expect(s.got[0].kind.case).toBe("heartbeat");
    expect(ts.app.events.watching(A)).toBe(3);
    expect(await metric("formstate_event_streams")).toBe(4);

    const usage = createClient(UsageService, ts.connect(adminA));
    const { spendAlert } = await usage.createSpendAlert({ parent, spendAlert: { threshold: { case: "thresholdMicros", value: 5_000n }, endpointUrl: "http://127.0.0.1:9/hooks", description: "five mills" } });
    await spend(A, adminA, 6_000);
    expect(await ts.app.alerts.check()).toBe(1);

    for (const [protocol, s] of Object.entries(streams)) {
      const [event] = await until(`the alert over ${protocol}`, () => s.events().length > 0 && s.events());
      expect(event.account, protocol).toBe(parent);
      expect(event.livemode).toBe(true);
      expect(event.payload.case).toBe("spendAlertFired");
      if (event.payload.case !== "spendAlertFired") continue;
      expect(event.payload.value).toMatchObject({ spendAlert: spendAlert!.name, apiKey: "", period: expect.stringMatching(/^\d{4}-\d{2}$/), threshold: { case: "thresholdMicros", value: 5_000n }, spentMicros: 6_000n, description: "five mills" });
      // The same event as the webhook: its id names the delivery, whose payload says the same.
      const { alertDeliveries } = await usage.listAlertDeliveries({ parent });
      expect(alertDeliveries.map((d) => d.name)).toEqual([`${parent}/alertDeliveries/${event.id}`]);
      const webhook = JSON.parse(alertDeliveries[0].payload) as { id: string; data: Record<string, unknown> };
      expect(webhook.id).toBe(event.id);
      expect(webhook.data).toMatchObject({ spend_alert: spendAlert!.name, period: event.payload.value.period, threshold_micros: 5_000, spent_micros: 6_000 });
    }
    // B's stream is alive (heartbeats) but never saw A's alert.
    await until("B's next heartbeat", () => onB.heartbeats() >= 2);
    expect(onB.events()).toEqual([]);

    for (const s of [...Object.values(streams), onB]) s.cancel();
    await Promise.all([...Object.values(streams), onB].map((s) => s.done));
    // Cancelled: no error but the cancel itself, and nothing left watching.
    for (const s of Object.values(streams)) expect(s.state.error?.code ?? Code.Canceled).toBe(Code.Canceled);
    await until("the watchers to go", () => ts.app.events.watching(A) === 0 && ts.app.events.watching(B) === 0);
    expect(await metric("formstate_event_streams")).toBe(0);
  });

  it("streams credits granted, and heartbeats while nothing happens", async () => {
    const s = watch(ts.connect(adminA), `accounts/${A}`);
    await until("the first heartbeat", () => s.got.length > 0);
    const granted = await createClient(BillingService, ts.connect(adminA)).addCredits({ parent: `accounts/${A}`, amountMicros: 250_000n, reason: "top up", requestId: "top-1" });
    const [event] = await until("the credits event", () => s.events().length > 0 && s.events());
    expect(event.payload).toEqual({
      case: "creditsAdded",
      value: expect.objectContaining({ creditTransaction: granted.creditTransaction!.name, amountMicros: 250_000n, balanceMicros: granted.balanceMicros, reason: "top up" }),
    });
    expect(event.livemode).toBe(true);
    // A retried grant books nothing and tells nothing.
    await createClient(BillingService, ts.connect(adminA)).addCredits({ parent: `accounts/${A}`, amountMicros: 250_000n, reason: "top up", requestId: "top-1" });
    const before = s.heartbeats();
    await until("three more heartbeats", () => s.heartbeats() >= before + 3);
    expect(s.events()).toHaveLength(1);
    s.cancel();
    await s.done;
  });

  it("tells a test key nothing about live money: it gets heartbeats but no live credits or alerts (docs/test-mode.md)", async () => {
    const keys = createClient(ApiKeyService, ts.connect(adminA));
    const { secret } = await keys.createApiKey({ parent: `accounts/${A}`, apiKey: { displayName: "test watcher", scopes: [Scope.READ], environment: KeyEnvironment.TEST } });
    expect(secret).toMatch(/^fs_test_/);
    const test = watch(keyTransport(secret), `accounts/${A}`);
    const live = watch(ts.connect(adminA), `accounts/${A}`);
    for (const s of [test, live]) await until("the first heartbeat", () => s.got.length > 0);
    await createClient(BillingService, ts.connect(adminA)).addCredits({ parent: `accounts/${A}`, amountMicros: 1_000n, reason: "live grant", requestId: "live-grant-for-test-watcher" });
    await until("the live watcher's credits event", () => live.events().length > 0);
    const before = test.heartbeats();
    await until("two more heartbeats of the test key's stream", () => test.heartbeats() >= before + 2);
    expect(test.events()).toEqual([]);
    // A sandbox grant made with a test key: its stream and users' see it (livemode false), a live key's does not.
    const { secret: testAdmin } = await keys.createApiKey({ parent: `accounts/${A}`, apiKey: { displayName: "test admin", scopes: [Scope.READ, Scope.WRITE, Scope.ADMIN], environment: KeyEnvironment.TEST } });
    const { secret: liveKey } = await keys.createApiKey({ parent: `accounts/${A}`, apiKey: { displayName: "live watcher", scopes: [Scope.READ] } });
    const liveKeyStream = watch(keyTransport(liveKey), `accounts/${A}`);
    await until("the live key's first heartbeat", () => liveKeyStream.got.length > 0);
    const userEvents = live.events().length;
    await createClient(BillingService, keyTransport(testAdmin)).addCredits({ parent: `accounts/${A}`, amountMicros: 2_000n, reason: "sandbox grant", requestId: "sandbox-grant-for-test-watcher" });
    const [sandbox] = await until("the sandbox grant on the test key's stream", () => test.events().length > 0 && test.events());
    expect(sandbox).toMatchObject({ livemode: false, payload: { case: "creditsAdded", value: { amountMicros: 2_000n } } });
    await until("the sandbox grant on the user's stream", () => live.events().length > userEvents);
    const before2 = liveKeyStream.heartbeats();
    await until("two more heartbeats of the live key's stream", () => liveKeyStream.heartbeats() >= before2 + 2);
    expect(liveKeyStream.events()).toEqual([]);
    liveKeyStream.cancel();
    await liveKeyStream.done;
    // Nor the delivery log of live alerts (the same facts as their events): empty for the test key, as its own mode has none.
    expect((await createClient(UsageService, ts.connect(adminA)).listAlertDeliveries({ parent: `accounts/${A}` })).alertDeliveries.length).toBeGreaterThan(0);
    expect((await createClient(UsageService, keyTransport(secret)).listAlertDeliveries({ parent: `accounts/${A}` })).alertDeliveries).toEqual([]);
    for (const s of [test, live]) s.cancel();
    await Promise.all([test.done, live.done]);
  });

  it("a test-mode project's watchers get its sandbox alerts (its events are test money, theirs to see)", async () => {
    const T = "events-testmode";
    const admin = await ts.token({ projectId: T, role: "admin" });
    await createClient(AccountService, ts.connect(admin)).createAccount({ account: { environment: KeyEnvironment.TEST } });
    await createClient(ModelService, ts.connect(admin)).createModel({ modelId: `${T}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
    const { secret } = await createClient(ApiKeyService, ts.connect(admin)).createApiKey({ parent: `accounts/${T}`, apiKey: { displayName: "watcher", scopes: [Scope.READ] } });
    const streams = [watch(ts.connect(admin), `accounts/${T}`), watch(keyTransport(secret), `accounts/${T}`)];
    for (const s of streams) await until("the first heartbeat", () => s.got.length > 0);
    await createClient(UsageService, ts.connect(admin)).createSpendAlert({ parent: `accounts/${T}`, spendAlert: { threshold: { case: "thresholdMicros", value: 5_000n }, endpointUrl: "http://127.0.0.1:9/hooks" } });
    await spend(T, admin, 6_000);
    expect(await ts.app.alerts.check()).toBe(1);
    for (const s of streams) {
      const [event] = await until("the sandbox alert", () => s.events().length > 0 && s.events());
      expect(event.payload.case).toBe("spendAlertFired");
    }
    for (const s of streams) s.cancel();
    await Promise.all(streams.map((s) => s.done));
  });

  it("streams a test-mode project's sandbox credits with livemode false", async () => {
    const admin = await ts.token({ projectId: "events-sandbox", role: "admin" });
    await createClient(AccountService, ts.connect(admin)).createAccount({ account: { environment: KeyEnvironment.TEST } });
    const s = watch(ts.connect(admin), "accounts/events-sandbox");
    await until("the first heartbeat", () => s.got.length > 0);
    await createClient(BillingService, ts.connect(admin)).addCredits({ parent: "accounts/events-sandbox", amountMicros: 7_000n, reason: "sandbox", requestId: "sb-1" });
    const [event] = await until("the sandbox credits", () => s.events().length > 0 && s.events());
    expect(event).toMatchObject({ livemode: false, payload: { case: "creditsAdded", value: { amountMicros: 7_000n, balanceMicros: 7_000n } } });
    s.cancel();
    await s.done;
  });

  it("refuses to watch another project's account (NOT_FOUND, as for one that does not exist) and needs the developer role", async () => {
    const answers: string[] = [];
    for (const parent of [`accounts/${A}`, "accounts/events-nobody"]) {
      const s = watch(ts.connect(adminB), parent);
      await s.done;
      expect(s.got).toEqual([]);
      expect(Code[s.state.error!.code], s.state.error?.rawMessage).toBe("NotFound");
      answers.push(s.state.error!.rawMessage.replace(parent, "<name>"));
    }
    expect(answers[0]).toBe(answers[1]);
    const user = await ts.token({ projectId: A, role: "user", subject: "a-user" });
    const s = watch(ts.connect(user), `accounts/${A}`);
    await s.done;
    expect(Code[s.state.error!.code]).toBe("PermissionDenied");
    const bad = watch(ts.connect(adminA), "accounts/Not_A_Name");
    await bad.done;
    expect(Code[bad.state.error!.code]).toBe("InvalidArgument");
    // The caller's own project before its account exists: NOT_FOUND with the same message, not a stream of heartbeats.
    const early = watch(ts.connect(await ts.token({ projectId: "events-noacct", role: "admin" })), "accounts/events-noacct");
    await early.done;
    expect(early.got).toEqual([]);
    expect(Code[early.state.error!.code], early.state.error?.rawMessage).toBe("NotFound");
    expect(early.state.error!.rawMessage.replace("accounts/events-noacct", "<name>")).toBe(answers[0]);
  });

  it("holds at most 100 streams of one account on a server: the next is RESOURCE_EXHAUSTED until one closes", async () => {
    const streams = Array.from({ length: MAX_WATCHERS }, () => watch(ts.grpc(adminB), `accounts/${B}`));
    await until("every stream open", () => streams.every((s) => s.got.length > 0), 30_000);
    const refused = watch(ts.grpc(adminB), `accounts/${B}`);
    await refused.done;
    expect(Code[refused.state.error!.code]).toBe("ResourceExhausted");
    expect(refused.state.error!.rawMessage).toMatch(/at most 100 streams/);
    // Another account is not affected.
    const onA = watch(ts.grpc(adminA), `accounts/${A}`);
    await until("A's stream", () => onA.got.length > 0);
    streams[0].cancel();
    await until("a free place", () => ts.app.events.watching(B) < MAX_WATCHERS);
    const next = watch(ts.grpc(adminB), `accounts/${B}`);
    await until("the next stream", () => next.got.length > 0);
    for (const s of [...streams, onA, next]) s.cancel();
    await Promise.all([...streams, onA, next].map((s) => s.done));
  });

  it("ends with UNAUTHENTICATED at the next heartbeat once its API key is revoked", async () => {
    const keys = createClient(ApiKeyService, ts.connect(adminA));
    const { apiKey, secret } = await keys.createApiKey({ parent: `accounts/${A}`, apiKey: { displayName: "watcher", scopes: [Scope.READ] } });
    const s = watch(ts.connect(), `accounts/${A}`);
    await s.done; // no credential at all: refused at once
    expect(Code[s.state.error!.code]).toBe("Unauthenticated");
    const withKey = watch(keyTransport(secret), `accounts/${A}`);
    await until("the first heartbeat", () => withKey.got.length > 0);
    await keys.revokeApiKey({ name: apiKey!.name });
    await withKey.done;
    expect(Code[withKey.state.error!.code], withKey.state.error?.rawMessage).toBe("Unauthenticated");
    expect(ts.app.events.watching(A)).toBe(0);
  });

  it("ends with UNAUTHENTICATED once its session is revoked", async () => {
    const token = await ts.app.devIssuer!.sign({ projectId: A, subject: "dana", role: "developer", sessionId: "s1" });
    const s = watch(ts.connect(token), `accounts/${A}`);
    await until("the first heartbeat", () => s.got.length > 0);
    await createClient(AccountService, ts.connect(adminA)).revokeSession({ name: await sessionOf("dana") });
    await s.done;
    expect(Code[s.state.error!.code], s.state.error?.rawMessage).toBe("Unauthenticated");
  });

  it("ends with PERMISSION_DENIED once its user is demoted below developer", async () => {
    const accounts = createClient(AccountService, ts.connect(adminA));
    await accounts.addMember({ parent: `accounts/${A}`, member: { userId: "erin", role: Role.DEVELOPER } });
    // No role claim: the role comes from the members table.
    const token = await ts.app.devIssuer!.sign({ projectId: A, subject: "erin" });
    const s = watch(ts.connect(token), `accounts/${A}`);
    await until("the first heartbeat", () => s.got.length > 0);
    await until("a second heartbeat", () => s.heartbeats() >= 2);
    await accounts.updateMember({ member: { name: `accounts/${A}/members/erin`, role: Role.USER }, updateMask: { paths: ["role"] } });
    await s.done;
    expect(Code[s.state.error!.code], s.state.error?.rawMessage).toBe("PermissionDenied");
  });

  it("streams to @grpc/grpc-js with metadata auth, and the client's cancel ends it", async () => {
    const def = protoLoader.loadSync(["formstate/v1/usage_service.proto"], { includeDirs: [join(root, "proto"), join(root, "third_party")], longs: String, enums: String, defaults: true, oneofs: true });
    // biome-ignore lint/suspicious/noExplicitAny: proto-loader packages are untyped
    const pkg = grpc.loadPackageDefinition(def) as any;
    const client = new pkg.formstate.v1.UsageService(`127.0.0.1:${ts.server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.add("authorization", `Bearer ${adminA}`);
    const call = client.watchAccountEvents({ parent: `accounts/${A}` }, md);
    // biome-ignore lint/suspicious/noExplicitAny: proto-loader messages are untyped
    const got: any[] = [];
    const ended = new Promise<number>((resolve) => {
      call.on("error", (e: { code: number }) => resolve(e.code));
      call.on("end", () => resolve(grpc.status.OK));
    });
    call.on("data", (m: unknown) => got.push(m));
    await until("the first heartbeat", () => got.length > 0);
    expect(got[0].kind).toBe("heartbeat");
    await createClient(BillingService, ts.connect(adminA)).addCredits({ parent: `accounts/${A}`, amountMicros: 1_000n, reason: "grpc-js", requestId: "grpc-js-1" });
    const event = await until("the event", () => got.find((m) => m.kind === "event"));
    expect(event.event).toMatchObject({ account: `accounts/${A}`, payload: "creditsAdded", creditsAdded: { amountMicros: "1000", reason: "grpc-js" } });
    call.cancel();
    expect(await ended).toBe(grpc.status.CANCELLED);
    await until("the watcher to go", () => ts.app.events.watching(A) === 0);
    client.close();
  });
});

function keyTransport(secret: string): Transport {
  return createGrpcWebTransport({
    baseUrl: ts.url,
    httpVersion: "1.1",
    interceptors: [
      (next) => (req) => {
        req.header.set("x-api-key", secret);
        return next(req);
      },
    ],
  });
}

async function sessionOf(subject: string): Promise<string> {
  const { sessions } = await createClient(AccountService, ts.connect(adminA)).listSessions({ parent: `accounts/${A}` });
  const mine = sessions.find((s) => s.subject === subject);
  if (!mine) throw new Error(`no session for ${subject}`);
  return mine.name;
}

describe("right after a debit", () => {
  it("fires the alert the debit crossed within moments, without waiting for the interval, and a debit of a project without alerts checks nothing", async () => {
    // The interval is an hour: only the check after the debit can fire it.
    const other = await startTestServer({ FORMSTATE_ALERT_CHECK_INTERVAL_MS: "3600000", FORMSTATE_ALERT_CHECK_AFTER_DEBIT_MS: "50", FORMSTATE_EVENT_HEARTBEAT_MS: "1000" }, { plans });
    try {
      const prev = ts;
      ts = other;
      try {
        const admin = await setUp("events-nudge");
        const quiet = await setUp("events-quiet");
        const checked: Array<string[] | undefined> = [];
        const check = other.app.alerts.check.bind(other.app.alerts);
        other.app.alerts.check = (projects?: string[]) => (checked.push(projects), check(projects));
        await spend("events-quiet", quiet, 100);
        const s = watch(other.connect(admin), "accounts/events-nudge");
        await until("the first heartbeat", () => s.got.length > 0);
        await createClient(UsageService, other.connect(admin)).createSpendAlert({ parent: "accounts/events-nudge", spendAlert: { threshold: { case: "thresholdMicros", value: 1_000n }, endpointUrl: "http://127.0.0.1:9/hooks" } });
        await spend("events-nudge", admin, 600);
        await spend("events-nudge", admin, 600); // crosses 1,000
        const [event] = await until("the alert", () => s.events().length > 0 && s.events(), 5_000);
        expect(event.payload.case).toBe("spendAlertFired");
        expect(event.payload.value).toMatchObject({ spentMicros: 1_200n });
        // Only the nudged project was checked, never the quiet one, never everything.
        expect(checked.length).toBeGreaterThan(0);
        expect(checked.every((p) => p !== undefined && p.length === 1 && p[0] === "events-nudge")).toBe(true);
        s.cancel();
        await s.done;
      } finally {
        ts = prev;
      }
    } finally {
      await other.close();
    }
  });
});

describe("credits bought with Stripe Checkout", () => {
  it("arrive on the stream once, whether ProcessCheckout or the webhook fulfils the session", async () => {
    const fake = await FakeStripe.start();
    const other = await startTestServer({ ...fake.env(), FORMSTATE_EVENT_HEARTBEAT_MS: "1000" }, { plans });
    try {
      const admin = await other.token({ projectId: "events-buy", role: "admin" });
      await createClient(AccountService, other.connect(admin)).createAccount({ account: { billingEmail: "ops@buy.test" } });
      const billing = createClient(BillingService, other.connect(admin));
      const s = watch(other.connect(admin), "accounts/events-buy");
      await until("the first heartbeat", () => s.got.length > 0);
      const created = await billing.createCheckoutSession({ parent: "accounts/events-buy", item: { case: "creditAmountMicros", value: 25_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
      const { session } = fake.completeSession(created.sessionId);
      const processed = await billing.processCheckout({ parent: "accounts/events-buy", sessionId: created.sessionId });
      // Stripe's webhook for the same session comes after: fulfilled already, no second event.
      expect((await deliverEvent(other.url, fake.event("checkout.session.completed", session))).status).toBe(200);
      await billing.processCheckout({ parent: "accounts/events-buy", sessionId: created.sessionId });
      const [event] = await until("the purchase", () => s.events().length > 0 && s.events());
      expect(event.payload.case).toBe("creditsAdded");
      expect(event.payload.value).toMatchObject({ amountMicros: 25_000_000n, balanceMicros: processed.balanceMicros, creditTransaction: expect.stringMatching(/^accounts\/events-buy\/creditTransactions\//) });
      const heartbeats = s.heartbeats();
      await until("another heartbeat", () => s.heartbeats() > heartbeats);
      expect(s.events()).toHaveLength(1);
      s.cancel();
      await s.done;
    } finally {
      await other.close();
      await fake.close();
    }
  });
});

describe("server shutdown", () => {
  it("ends open streams with UNAVAILABLE at once instead of holding the drain", async () => {
    const other = await startTestServer({ FORMSTATE_EVENT_HEARTBEAT_MS: "60000", FORMSTATE_SHUTDOWN_GRACE_MS: "20000" }, { plans });
    try {
      const admin = await other.token({ projectId: "events-stop", role: "admin" });
      await createClient(AccountService, other.connect(admin)).createAccount({ account: {} });
      const s = watch(other.connect(admin), "accounts/events-stop");
      await until("the first heartbeat", () => s.got.length > 0);
      const started = Date.now();
      await other.server.stop();
      await s.done;
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(Code[s.state.error!.code], s.state.error?.rawMessage).toBe("Unavailable");
    } finally {
      await other.close().catch(() => {});
    }
  });
});
