/**
 * Three Formstate processes sharing PostgreSQL and Redis, load spread across
 * them: one key's rate limit holds globally; concurrent debits never
 * overdraw and the ledger adds up; a key revoked on one instance fails on the
 * others at once; the outbox reports each usage to (a fake) Stripe exactly
 * once; and with one instance SIGKILLed mid-load the others keep serving and
 * nothing acknowledged is lost.
 *
 * Needs PostgreSQL and Redis (see README); without them these tests skip with
 * a message, and fail under CI=true.
 */
import { Code, ConnectError, type Transport, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { LimitExceededSchema, LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { meterIdentifier } from "../../src/billing/outbox.js";
import { FakeStripe } from "../support/fake-stripe.js";
import { bearer } from "../support/test-server.js";
import { Cluster, type Instance, missingParts } from "./cluster.js";

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  describe("three instances on PostgreSQL and Redis", () => {
    it("needs PostgreSQL and Redis under CI", () => {
      throw new Error(`missing: ${missing}`);
    });
  });
} else if (missing) {
  console.warn(`skipping test/scale: missing ${missing}`);
}

const transport = (inst: Instance, token?: string) => createGrpcTransport({ baseUrl: inst.url, interceptors: bearer(token) });
const keyTransport = (inst: Instance, key: string): Transport =>
  createGrpcTransport({ baseUrl: inst.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", key), next(req))] });

describe.skipIf(Boolean(missing))("three instances on PostgreSQL and Redis", () => {
  let fake: FakeStripe;
  let cluster: Cluster;
  let a: Instance;
  let b: Instance;
  let c: Instance;
  let all: Instance[];
  const recordIds = new Set<string>();

  beforeAll(async () => {
    fake = await FakeStripe.start();
    cluster = new Cluster(fake.env({ STRIPE_METER_INTERVAL_MS: "200", STRIPE_API_TIMEOUT_MS: "1000" }));
    // The first one creates the schema, runs migrations and the dev issuer key; then the other two.
    a = await cluster.start("A");
    [b, c] = await Promise.all([cluster.start("B"), cluster.start("C")]);
    all = [a, b, c];
  }, 120_000);
  afterAll(async () => {
    await cluster?.close();
    await fake?.close();
  });

  /**
   * An account with `credits` micro-USD, a model at 1 micro-USD per input token, and a Stripe customer.
   * `arrears`: on the Enterprise plan (billed in arrears), so usage beyond the credits is metered to Stripe.
   */
  async function project(projectId: string, credits: number, arrears = false) {
    const admin = await cluster.token(projectId, "admin");
    await createClient(AccountService, transport(a, admin)).createAccount({ account: {} });
    if (arrears) await cluster.db.query("update account set plan_tier = 'enterprise' where project_id = $1", [projectId]);
    const billing = createClient(BillingService, transport(b, admin));
    if (credits) await billing.addCredits({ parent: `accounts/${projectId}`, amountMicros: BigInt(credits), reason: "test", requestId: "seed" });
    await createClient(ModelService, transport(c, admin)).createModel({
      modelId: `${projectId}/m`,
      model: { inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 1_000_000n, visibility: ModelVisibility.PRIVATE },
    });
    // A Checkout session creates the Stripe customer; from then on usage goes to the outbox.
    await billing.createCheckoutSession({ parent: `accounts/${projectId}`, item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
    if (arrears) {
      // Each instance caches plans for a few seconds: wait until every one sees Enterprise (no floor).
      for (const inst of all) {
        const usage = createClient(UsageService, transport(inst, admin));
        const check = () => usage.checkEligibility({ parent: `accounts/${projectId}`, check: { case: "modelUsage", value: { model: `models/${projectId}/m`, inputTokens: 1n } } });
        await expect.poll(async () => (await check()).eligible, { timeout: 15_000, interval: 500 }).toBe(true);
      }
    }
    return { admin, dev: await cluster.token(projectId, "developer") };
  }

  async function balanceAndLedger(projectId: string) {
    const bal = await cluster.db.query<{ b: string }>("select credit_balance_micros as b from account where project_id = $1", [projectId]);
    const sum = await cluster.db.query<{ s: string | null }>("select sum(amount_micros) as s from credit_transaction where project_id = $1", [projectId]);
    return { balance: Number(bal.rows[0].b), ledgerSum: Number(sum.rows[0].s ?? 0) };
  }

  it("every instance reports Redis connected in /healthz", async () => {
    for (const inst of all) {
      const res = await fetch(`${inst.url}/healthz`);
      expect(await res.json()).toEqual({ status: "SERVING", redis: "connected" });
    }
  });

  it("one key's rate limit holds across the three instances", async () => {
    const { admin } = await project("limited", 0);
    const rps = 1;
    const burst = 6;
    const { secret } = await createClient(ApiKeyService, transport(a, admin)).createApiKey({
      parent: "accounts/limited",
      apiKey: { displayName: "limited", scopes: [Scope.READ], rateLimit: { requestsPerSecond: rps, burst } },
    });
    const clients = all.map((inst) => createClient(AccountService, keyTransport(inst, secret)));
    let allowed = 0;
    let limited = 0;
    const other: string[] = [];
    const start = Date.now();
    const until = start + 3_000;
    // 6 callers per instance, as fast as the instances answer, for 3 s.
    await Promise.all(
      Array.from({ length: 18 }, async (_, i) => {
        while (Date.now() < until) {
          try {
            await clients[i % 3].getAccount({ name: "accounts/limited" });
            allowed++;
          } catch (err) {
            const ce = ConnectError.from(err);
            if (ce.code === Code.ResourceExhausted) limited++;
            else other.push(ce.message);
          }
        }
      }),
    );
    const elapsedSec = (Date.now() - start) / 1000;
    console.log(`rate limit ${rps}/s burst ${burst} across 3 instances: ${allowed} allowed, ${limited} limited in ${elapsedSec.toFixed(2)} s`);
    expect(other).toEqual([]);
    // Every decision was Redis's (a call that times out is decided in-process, per instance, and logged).
    expect(all.flatMap((inst) => inst.output().split("\n").filter((l) => l.includes("rate limit decided in-process")))).toEqual([]);
    // GCRA: from a full bucket, at most burst + rps x elapsed in any stretch of time; three per-instance limiters would allow 3 x burst at once.
    expect(allowed).toBeLessThanOrEqual(burst + Math.ceil(rps * elapsedSec));
    expect(allowed).toBeGreaterThanOrEqual(burst);
    expect(allowed + limited).toBeGreaterThan(3 * burst);
  });

  it("64 concurrent debits spread across instances: exactly those the credits cover succeed, the ledger sums to the balance", async () => {
    const { dev } = await project("debits", 32_000);
    const clients = all.map((inst) => createClient(UsageService, transport(inst, dev)));
    let ok = 0;
    let exhausted = 0;
    const other: string[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        try {
          // 1,000 input tokens at 1 micro-USD each.
          const res = await clients[i % 3].recordUsage({ parent: "accounts/debits", requestId: `d-${i}`, usage: { case: "modelUsage", value: { model: "models/debits/m", inputTokens: 1_000n } } });
          recordIds.add(res.usageRecord!.name.split("/").pop()!);
          ok++;
        } catch (err) {
          const ce = ConnectError.from(err);
          if (ce.code === Code.FailedPrecondition && ce.findDetails(LimitExceededSchema)[0]?.reason === LimitReason.CREDITS_EXHAUSTED) exhausted++;
          else other.push(ce.message);
        }
      }),
    );
    expect(other).toEqual([]);
    expect({ ok, exhausted }).toEqual({ ok: 32, exhausted: 32 });
    expect(await balanceAndLedger("debits")).toEqual({ balance: 0, ledgerSum: 0 });
  });

  it("a key revoked through A fails on B and C on the very next call", async () => {
    const { admin } = await project("revoke", 0);
    const keys = createClient(ApiKeyService, transport(a, admin));
    for (let round = 0; round < 5; round++) {
      const created = await keys.createApiKey({ parent: "accounts/revoke", apiKey: { displayName: `k${round}`, scopes: [Scope.READ] } });
      // Every instance has the key cached (its cache would trust it for 30 s).
      for (const inst of all) await createClient(AccountService, keyTransport(inst, created.secret)).getAccount({ name: "accounts/revoke" });
      await keys.revokeApiKey({ name: created.apiKey!.name, reason: "leaked" });
      for (const inst of [b, c]) {
        const err = await createClient(AccountService, keyTransport(inst, created.secret))
          .getAccount({ name: "accounts/revoke" })
          .then(() => undefined, (e: unknown) => ConnectError.from(e));
        expect(err?.code, `instance ${inst.name}, round ${round}`).toBe(Code.Unauthenticated);
        expect(err?.rawMessage).toMatch(/revoked/);
      }
    }
  });

  it("the outbox in every instance reports each usage to Stripe exactly once", async () => {
    // No credits: all usage is overage, and overage is what the meter carries (the invoicing rule).
    const { dev } = await project("metered", 0, true);
    const clients = all.map((inst) => createClient(UsageService, transport(inst, dev)));
    // The prepaid "debits" project's usage is not metered (paid from credits): only this project's is.
    const meteredIds = new Set<string>();
    await Promise.all(
      Array.from({ length: 90 }, async (_, i) => {
        const res = await clients[i % 3].recordUsage({ parent: "accounts/metered", requestId: `m-${i}`, usage: { case: "modelUsage", value: { model: "models/metered/m", inputTokens: BigInt(100 + i) } } });
        meteredIds.add(res.usageRecord!.name.split("/").pop()!);
      }),
    );
    const expected = [...meteredIds].map(meterIdentifier);
    await expect.poll(() => expected.filter((id) => fake.accepted.has(id)).length, { timeout: 30_000, interval: 250 }).toBe(expected.length);
    // Give a double send time to happen, then count every attempt per identifier.
    await new Promise((r) => setTimeout(r, 1_000));
    const attempts = new Map<string, number>();
    for (const at of fake.meterAttempts) attempts.set(at.identifier, (attempts.get(at.identifier) ?? 0) + 1);
    expect(expected.filter((id) => attempts.get(id) !== 1)).toEqual([]);
    expect(expected.filter((id) => fake.accepted.get(id)!.count !== 1)).toEqual([]);
    const sent = await cluster.db.query<{ n: string }>("select count(*) as n from meter_outbox where status = 'sent'");
    expect(Number(sent.rows[0].n)).toBe(expected.length);
    console.log(`outbox: ${expected.length} usages reported once each by 3 senders`);
  }, 90_000);

  it("SIGKILL one instance mid-load: the others keep serving and nothing acknowledged is lost", async () => {
    const { dev } = await project("killed", 0, true);
    const acknowledged = new Map<string, string>(); // request id -> record id
    let refusedByDead = 0;
    let afterKill = 0;
    const byInstance = new Map<string, number>();
    let killed = false;
    const live = () => (killed ? [a, b] : all);
    const clientsOf = new Map(all.map((inst) => [inst, createClient(UsageService, transport(inst, dev))]));
    // Load runs until 3 s after the kill; the kill comes once C has acknowledged 10 usages (or after 20 s).
    let until = Date.now() + 60_000;
    const kill = () => {
      if (killed) return;
      c.child.kill("SIGKILL");
      killed = true;
      until = Date.now() + 3_000;
    };
    const fallbackKill = setTimeout(kill, 20_000);
    await Promise.all(
      Array.from({ length: 24 }, async (_, w) => {
        for (let j = 0; Date.now() < until; j++) {
          const requestId = `k-${w}-${j}`;
          // Spread across the instances; a call the dead one never answered is retried elsewhere with the same request id.
          for (let attempt = 0; ; attempt++) {
            const targets = live();
            const inst = targets[(w + j + attempt) % targets.length];
            try {
              const res = await clientsOf.get(inst)!.recordUsage({ parent: "accounts/killed", requestId, usage: { case: "modelUsage", value: { model: "models/killed/m", inputTokens: 10n } } });
              acknowledged.set(requestId, res.usageRecord!.name.split("/").pop()!);
              if (killed) afterKill++;
              byInstance.set(inst.name, (byInstance.get(inst.name) ?? 0) + 1);
              if (inst === c && byInstance.get("C")! >= 10) kill();
              break;
            } catch (err) {
              // Only calls to the instance being killed may fail (unanswered, reset or refused connection).
              if (inst !== c) throw err;
              await new Promise((r) => setTimeout(r, 50));
              refusedByDead++;
              if (attempt > 5) throw err;
            }
          }
        }
      }),
    );
    clearTimeout(fallbackKill);
    expect(await c.exited).toBe(null); // killed by a signal
    console.log(`kill test: ${acknowledged.size} usages acknowledged (${[...byInstance].map(([n, k]) => `${n} ${k}`).join(", ")}), ${afterKill} after the kill, ${refusedByDead} calls lost with the killed instance and retried`);
    expect(byInstance.get("C")).toBeGreaterThanOrEqual(10);
    expect(afterKill).toBeGreaterThan(20);
    // Every acknowledged usage is in the store, with the record id it was acknowledged with, and debited once.
    const stored = await cluster.db.query<{ request_id: string; record_id: string }>("select request_id, record_id from usage_record where project_id = 'killed'");
    const byRequest = new Map(stored.rows.map((r) => [r.request_id, r.record_id]));
    expect([...acknowledged].filter(([req, rec]) => byRequest.get(req) !== rec)).toEqual([]);
    const { balance, ledgerSum } = await balanceAndLedger("killed");
    expect(balance).toBe(ledgerSum);
    // Every debit was overage, metered and moved to the invoice: nothing is owed on the balance.
    expect(balance).toBe(0);
    const debits = await cluster.db.query<{ s: string }>("select sum(amount_micros) as s from credit_transaction where project_id = 'killed' and kind = 'usage_debit'");
    expect(Number(debits.rows[0].s)).toBe(-10 * stored.rows.length);
    // The survivors report the killed instance's usage too (after its leases run out), each once.
    const expected = stored.rows.map((r) => meterIdentifier(r.record_id));
    await expect.poll(() => expected.filter((id) => fake.accepted.has(id)).length, { timeout: 45_000, interval: 500 }).toBe(expected.length);
    expect(expected.filter((id) => fake.accepted.get(id)!.count !== 1)).toEqual([]);
    for (const inst of [a, b]) expect((await fetch(`${inst.url}/healthz`)).status).toBe(200);
  }, 90_000);
});
