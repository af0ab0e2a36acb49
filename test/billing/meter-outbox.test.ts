/**
 * Metered usage to Stripe: the outbox row written with the usage debit, the
 * sender through a Stripe outage (500s, then timeouts) and a restart, leases
 * of a crashed sender, usage too old for Stripe, and a report Stripe refuses.
 * Most tests drive the sender's passes by hand with a manual clock (its own
 * timer is set to 10 minutes); the last runs the background loop for real.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { meterIdentifier } from "../../src/billing/outbox.js";
import { DAY_MS } from "../../src/usage/period.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { FakeStripe, METER_EVENT } from "../support/fake-stripe.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let fake: FakeStripe;
let dir: string;
const clock = new ManualClock(Date.now());
const logLines: Array<{ level: number; msg: string; identifier?: string }> = [];
const log = pino(
  { level: "info" },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(JSON.parse(chunk.toString()) as (typeof logLines)[number]);
      done();
    },
  }),
);

/**
 * Every plan billed in arrears with no included credits and no credits granted: all usage is overage,
 * so all of it is metered (the invoicing rule itself: test/billing/invoicing.test.ts).
 */
const arrears = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, overdraftAllowed: true })));

/** Backoff of 1 s doubling to 8 s; requests time out after 300 ms; no automatic passes. */
const env = (extra: Record<string, string> = {}) =>
  fake.env({ STRIPE_API_TIMEOUT_MS: "300", STRIPE_METER_INTERVAL_MS: "600000", STRIPE_METER_BACKOFF_MS: "1000", STRIPE_METER_BACKOFF_MAX_MS: "8000", ...extra });

beforeAll(async () => {
  fake = await FakeStripe.start();
  dir = mkdtempSync(join(tmpdir(), "formstate-meter-"));
});
afterAll(async () => {
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An account without credits (all usage is overage), a priced model, and (unless `customer` is false) a Stripe customer. */
async function setup(ts: TestServer, projectId: string, customer = true) {
  const admin = await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` });
  await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
  const billing = createClient(BillingService, ts.grpc(admin));
  await createClient(ModelService, ts.grpc(admin)).createModel({ modelId: `${projectId}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 3_000_000n, visibility: ModelVisibility.PRIVATE } });
  // The price has been in force for a month, so backdated usage is priced (usage is priced at occur_time).
  await ts.app.database.db.updateTable("model_price").set({ effective_from: clock.now() - 31 * DAY_MS }).where("model_id", "=", `${projectId}/m`).execute();
  if (customer) {
    await billing.createCheckoutSession({ parent: `accounts/${projectId}`, item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
  }
  const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId, role: "developer" })));
  const customerId = customer ? (await ts.app.database.db.selectFrom("billing_customer").select("stripe_customer_id").where("project_id", "=", projectId).executeTakeFirstOrThrow()).stripe_customer_id : "";
  /** Records usage of `tokens` input tokens (cost: tokens micro-USD, plus 3 per output token); returns the record id and cost. */
  const use = async (requestId: string, tokens: number, occurTime?: number, outputTokens = 0) => {
    const { usageRecord } = await usage.recordUsage({
      parent: `accounts/${projectId}`,
      requestId,
      usage: { case: "modelUsage", value: { model: `models/${projectId}/m`, inputTokens: BigInt(tokens), outputTokens: BigInt(outputTokens) } },
      occurTime: occurTime === undefined ? undefined : timestampFromMs(occurTime),
    });
    return { id: usageRecord!.name.split("/").pop()!, cost: Number(usageRecord!.costMicros) };
  };
  return { use, customerId };
}

const rows = (ts: TestServer, projectId: string) => ts.app.database.db.selectFrom("meter_outbox").selectAll().where("project_id", "=", projectId).orderBy("create_time").execute();
const attemptsOf = (identifier: string) => fake.meterAttempts.filter((a) => a.identifier === identifier).map((a) => a.outcome);

describe("the outbox row", () => {
  it("is written with the usage debit, once per record, only for accounts with a Stripe customer", async () => {
    const ts = await startTestServer(env(), { clock, plans: arrears });
    try {
      const { use, customerId } = await setup(ts, "metered");
      const a = await use("r1", 1200);
      await use("r1", 1200); // a retry: no second debit, no second row
      const past = clock.now() - 3 * DAY_MS;
      const b = await use("r2", 700, past);
      expect((await rows(ts, "metered")).map((r) => [r.identifier, r.stripe_customer_id, r.value_micros, r.event_time, r.status, r.attempts])).toEqual([
        [meterIdentifier(a.id), customerId, 1200, clock.now(), "pending", 0],
        [meterIdentifier(b.id), customerId, 700, past, "pending", 0],
      ]);
      expect(a.cost).toBe(1200);

      // A usage refused (here: outside the backdating window) rolls back its debit, and the outbox row with it.
      await expect(use("refused", 10, clock.now() - 40 * DAY_MS)).rejects.toThrow(/occur_time/);
      expect(await rows(ts, "metered")).toHaveLength(2);

      const { use: freeUse } = await setup(ts, "unbilled", false);
      await freeUse("x", 500);
      expect(await rows(ts, "unbilled")).toEqual([]);
    } finally {
      await ts.close();
    }
  });
});

describe("the sender", () => {
  it("through 500s, timeouts and a restart reports every usage exactly once, with the same identifier on every try", async () => {
    const dbFile = join(dir, "restart.db");
    let ts = await startTestServer(env({ DATABASE_URL: dbFile }), { clock, plans: arrears });
    const { use, customerId } = await setup(ts, "outage");
    const used = [];
    const recordedAt = clock.now();
    for (let i = 0; i < 12; i++) used.push(await use(`u${i}`, 1000 + i));
    const ids = used.map((u) => meterIdentifier(u.id));
    const sender = () => ts.app.billing.meter!;

    // Stripe answers 500: the first pass tries at most 8 at once, then the whole sender pauses.
    fake.meterMode = "fail500";
    expect(await sender().pass()).toBe(0);
    const failedFirst = fake.meterAttempts.filter((a) => a.outcome === "failed").length;
    expect(failedFirst).toBeGreaterThanOrEqual(1);
    expect(failedFirst).toBeLessThanOrEqual(8);
    let outbox = await rows(ts, "outage");
    expect(outbox.filter((r) => r.attempts === 1)).toHaveLength(failedFirst);
    for (const r of outbox.filter((r) => r.attempts === 1)) {
      expect(r.last_error).toBe("StripeAPIError 500: fake Stripe outage");
      expect(r.next_attempt_time - clock.now()).toBeGreaterThanOrEqual(800); // 1 s +-20%
      expect(r.next_attempt_time - clock.now()).toBeLessThanOrEqual(1200);
    }
    expect(outbox.every((r) => r.status === "pending" && r.lease_owner === null)).toBe(true);
    expect(await sender().pass()).toBe(0); // paused: no request at all
    expect(fake.meterAttempts.length).toBe(failedFirst);

    // Later: timeouts (the fake never answers), and the server restarts while reports hang.
    clock.advance(60_000);
    fake.meterMode = "hang";
    const inFlight = sender().pass();
    await expect.poll(() => fake.meterAttempts.some((a) => a.outcome === "hung")).toBe(true);
    await ts.close(); // waits for the reports in flight (they time out), hands back what it holds
    expect(await inFlight).toBe(0);
    const hung = fake.meterAttempts.filter((a) => a.outcome === "hung").length;
    const attemptsAtClose = fake.meterAttempts.length;

    // After the restart a crashed sender's lease is honoured until it runs out.
    ts = await startTestServer(env({ DATABASE_URL: dbFile }), { clock, plans: arrears });
    outbox = await rows(ts, "outage");
    expect(outbox.filter((r) => r.last_error === "StripeConnectionError: Request aborted due to timeout being reached (300ms)")).toHaveLength(hung);
    expect(outbox.every((r) => r.status === "pending" && r.lease_owner === null)).toBe(true);
    await ts.app.database.db.updateTable("meter_outbox").set({ lease_owner: "meter-crashed", lease_until: clock.now() + 60_000 }).where("identifier", "=", ids[11]).execute();
    expect(fake.meterAttempts.length).toBe(attemptsAtClose);

    fake.meterMode = "ok";
    clock.advance(60_000 - 1);
    while ((await sender().stats()).pending > 1) {
      await sender().pass();
      clock.advance(10_000);
    }
    expect(fake.accepted.has(ids[11])).toBe(false); // still leased by the crashed sender
    clock.advance(60_000);
    await sender().pass();

    expect(await sender().stats()).toMatchObject({ pending: 0, sent: 12, failed: 0 });
    expect([...fake.accepted.keys()].filter((k) => ids.includes(k)).sort()).toEqual([...ids].sort());
    for (const [i, id] of ids.entries()) {
      expect(fake.accepted.get(id)).toEqual({ count: 1, eventName: METER_EVENT, customer: customerId, value: String(1000 + i), timestamp: Math.floor(recordedAt / 1000) });
    }
    // Every try of a usage carried its one identifier, and only the last one was accepted.
    const retried = ids.filter((id) => attemptsOf(id).length > 1);
    expect(retried.length).toBeGreaterThanOrEqual(1);
    for (const id of ids) expect(attemptsOf(id).at(-1)).toBe("accepted");
    expect(fake.meterAttempts.filter((a) => a.outcome === "replayed")).toEqual([]);
    expect(fake.meterAttempts.every((a) => a.identifier.startsWith("fs-usage-"))).toBe(true);
    expect((await rows(ts, "outage")).every((r) => r.status === "sent" && r.sent_time !== null && r.lease_owner === null)).toBe(true);
    await ts.close();
  });

  it("usage older than Stripe's 35 days is a failed report with an error logged, not dropped silently", async () => {
    const ts = await startTestServer(env(), { clock, log, plans: arrears });
    try {
      const { use } = await setup(ts, "late");
      const old = await use("old", 900, clock.now() - 29 * DAY_MS);
      const fresh = await use("fresh", 800);
      clock.advance(7 * DAY_MS); // Stripe was unreachable for a week
      fake.meterMode = "ok";
      expect(await ts.app.billing.meter!.pass()).toBe(1);
      const [oldRow, freshRow] = await rows(ts, "late");
      expect(oldRow).toMatchObject({ identifier: meterIdentifier(old.id), status: "failed", attempts: 0 });
      expect(oldRow.last_error).toMatch(/^usage of \d{4}-\d\d-\d\dT[\d:.]+Z is older than the 35 days Stripe accepts: not reported$/);
      expect(freshRow).toMatchObject({ identifier: meterIdentifier(fresh.id), status: "sent" });
      expect(fake.meterAttempts.map((a) => a.identifier)).not.toContain(meterIdentifier(old.id));
      const line = logLines.find((l) => l.identifier === meterIdentifier(old.id));
      expect(line).toMatchObject({ level: 50 });
      expect(line!.msg).toMatch(/^meter report failed: usage of .* older than the 35 days/);
      expect(await ts.app.billing.meter!.stats()).toMatchObject({ pending: 0, failed: 1 });
    } finally {
      await ts.close();
    }
  });

  it("a report Stripe refuses as it is (400) is marked failed with Stripe's reason and not retried", async () => {
    const ts = await startTestServer(env({ STRIPE_METER_EVENT_NAME: "no_such_meter" }), { clock, plans: arrears });
    try {
      const { use } = await setup(ts, "refused");
      const u = await use("a", 600);
      fake.meterMode = "ok";
      expect(await ts.app.billing.meter!.pass()).toBe(0);
      const [row] = await rows(ts, "refused");
      expect(row).toMatchObject({ status: "failed", attempts: 1, last_error: "StripeInvalidRequestError 400: No active meter found for event_name no_such_meter" });
      clock.advance(DAY_MS);
      await ts.app.billing.meter!.pass();
      expect(attemptsOf(meterIdentifier(u.id))).toEqual(["failed"]);
    } finally {
      await ts.close();
    }
  });

  it("the background loop reports on its own after an outage, and stops on close", async () => {
    const ts = await startTestServer(fake.env({ STRIPE_API_TIMEOUT_MS: "300", STRIPE_METER_INTERVAL_MS: "20", STRIPE_METER_BACKOFF_MS: "50", STRIPE_METER_BACKOFF_MAX_MS: "200" }), { plans: arrears });
    let closed = false;
    try {
      const { use } = await setup(ts, "looped");
      fake.meterMode = "fail500";
      const used = [await use("a", 100), await use("b", 200), await use("c", 300)];
      const ids = used.map((u) => meterIdentifier(u.id));
      await expect.poll(() => fake.meterAttempts.filter((a) => ids.includes(a.identifier) && a.outcome === "failed").length, { timeout: 5_000 }).toBeGreaterThanOrEqual(3);
      fake.meterMode = "ok";
      await expect.poll(async () => (await ts.app.billing.meter!.stats()).sent, { timeout: 5_000 }).toBe(3);
      expect(ids.map((id) => fake.accepted.get(id)?.count)).toEqual([1, 1, 1]);

      await ts.close();
      closed = true;
      const sent = fake.requests.length;
      await new Promise((r) => setTimeout(r, 200));
      expect(fake.requests.length).toBe(sent);
    } finally {
      if (!closed) await ts.close();
    }
  });
});
