/**
 * Two instances sharing one store and one Redis: a console watching on
 * instance B sees a spend alert that instance A's watcher fired, and credits
 * granted through A, once each; a watcher of another project on B sees
 * neither. With PostgreSQL in DATABASE_URL both use one schema there.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectError, type Transport, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService, type WatchAccountEventsResponse } from "../../gen/formstate/v1/usage_service_pb.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { REDIS_URL, missingParts } from "../scale/cluster.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  it("needs PostgreSQL and Redis under CI", () => {
    throw new Error(`missing: ${missing}`);
  });
} else if (missing) {
  console.warn(`skipping the cross-instance event stream tests: missing ${missing}`);
}

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));

function watch(transport: Transport, parent: string) {
  const abort = new AbortController();
  const got: WatchAccountEventsResponse[] = [];
  const done = (async () => {
    try {
      for await (const m of createClient(UsageService, transport).watchAccountEvents({ parent }, { signal: abort.signal })) got.push(m);
    } catch (err) {
      return ConnectError.from(err);
    }
  })();
  return { got, done, cancel: () => abort.abort(), events: () => got.flatMap((m) => (m.kind.case === "event" ? [m.kind.value] : [])) };
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

describe.skipIf(Boolean(missing))("account events across instances", () => {
  const shared = mkdtempSync(join(tmpdir(), "formstate-xevents-"));
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    // One data dir (same dev-issuer keys), one SQLite file, one Redis prefix; the alert watchers are driven by hand.
    const env: Record<string, string> = {
      FORMSTATE_DATA_DIR: shared,
      REDIS_URL,
      FORMSTATE_REDIS_PREFIX: `test:xevents:${randomBytes(4).toString("hex")}:`,
      FORMSTATE_ALERT_CHECK_INTERVAL_MS: "3600000",
      FORMSTATE_ALERT_CHECK_AFTER_DEBIT_MS: "0",
      FORMSTATE_EVENT_HEARTBEAT_MS: "200",
    };
    if (!/^postgres/.test(process.env.DATABASE_URL ?? "")) env.DATABASE_URL = join(shared, "formstate.db");
    a = await startTestServer(env, { plans });
    b = await startTestServer({ ...env, ...(a.app.config.databaseUrl.startsWith("postgres") && { DATABASE_URL: a.app.config.databaseUrl }) }, { plans });
  }, 60_000);
  afterAll(async () => {
    await b?.close();
    await a?.close();
    rmSync(shared, { recursive: true, force: true });
  });

  it("a watcher on B gets the alert A fired and the credits granted through A, once each; another project's watcher gets nothing", async () => {
    const admin = await a.token({ projectId: "xe", role: "admin" });
    const other = await a.token({ projectId: "xe-other", role: "admin" });
    await createClient(AccountService, a.connect(admin)).createAccount({ account: {} });
    await createClient(AccountService, a.connect(other)).createAccount({ account: {} });
    await createClient(ModelService, a.connect(admin)).createModel({ modelId: "xe/m", model: { inputPriceMicrosPerMillion: 1_000_000n } });
    const onB = watch(b.connect(admin), "accounts/xe");
    const otherOnB = watch(b.connect(other), "accounts/xe-other");
    await until("both watches in place", () => onB.got.length > 0 && otherOnB.got.length > 0);

    const grant = await createClient(BillingService, a.connect(admin)).addCredits({ parent: "accounts/xe", amountMicros: 100_000n, reason: "via A", requestId: "g1" });
    const { spendAlert } = await createClient(UsageService, a.connect(admin)).createSpendAlert({
      parent: "accounts/xe",
      spendAlert: { threshold: { case: "thresholdMicros", value: 1_000n }, endpointUrl: "http://127.0.0.1:9/hooks" },
    });
    await createClient(UsageService, a.connect(admin)).recordUsage({ parent: "accounts/xe", requestId: "u1", usage: { case: "modelUsage", value: { model: "models/xe/m", inputTokens: 2_000n } } });
    expect(await a.app.alerts.check()).toBe(1);
    expect(await b.app.alerts.check()).toBe(0); // fired once, by whichever instance got there first

    const events = await until("both events on B", () => onB.events().length >= 2 && onB.events());
    expect(events.map((e) => e.payload.case)).toEqual(["creditsAdded", "spendAlertFired"]);
    expect(events[0].payload.value).toMatchObject({ creditTransaction: grant.creditTransaction!.name, amountMicros: 100_000n });
    expect(events[1].payload.value).toMatchObject({ spendAlert: spendAlert!.name, spentMicros: 2_000n });
    // Heartbeats go on; no copy of either event arrives, and the other project heard nothing.
    const seen = onB.got.length;
    await until("two more messages", () => onB.got.length >= seen + 2);
    expect(onB.events()).toHaveLength(2);
    expect(otherOnB.events()).toEqual([]);
    onB.cancel();
    otherOnB.cancel();
    await Promise.all([onB.done, otherOnB.done]);
  });
});
