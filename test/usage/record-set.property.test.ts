/**
 * The set-based group commit (src/usage/record-set.ts) as a property: for a
 * random list of usages sent all at once to two projects (random balances
 * and plans, prepaid or billed in arrears with a Stripe customer, live and
 * test keys with and without spend caps, a scoped child key spending its
 * parent's cap, a customer key named by the gateway, replays with the same
 * and with a different request, unknown models, a test key naming a live
 * customer key), the run decided and written set-based leaves exactly what
 * the same usages recorded one at a time through the per-unit path leave:
 * the same answers (accepted with the same cost and balance, or refused with
 * the same code and message), the same ledgers entry by entry (seq, kind,
 * amount, balance after, idempotency key), balances, key spend, records,
 * hourly rollups and what is metered to Stripe. On SQLite, and on
 * PostgreSQL in `npm run test:pg`.
 */
import { ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import type { ApiKeyPrincipal } from "../../src/auth/principal.js";
import { createFormstateClient } from "../../src/client/node.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import type { RecordInput } from "../../src/usage/usage.js";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { FakeStripe } from "../support/fake-stripe.js";
import { serverWithFakeStripe } from "../support/stripe-server.js";
import type { TestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, apiKeyLimit: null, includedCreditsMicros: p.overdraftAllowed ? 400 : 300, sandboxCreditsMicros: 700 })));
let ts: TestServer;
let fake: FakeStripe;
serverWithFakeStripe(plans, (s) => ({ ts, fake } = s));

type Caller = "live" | "capped" | "child" | "test";
interface Op {
  project: 0 | 1;
  caller: Caller;
  customer: boolean;
  model: "m" | "m2" | "unknown";
  tokens: number;
  rid: number;
  variant: 0 | 1;
}
interface ProjectSetup {
  overdraft: boolean;
  credits: number;
  keyCap: number | null;
  customerCap: number | null;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  project: fc.constantFrom<0 | 1>(0, 1),
  caller: fc.constantFrom<Caller>("live", "capped", "child", "test"),
  customer: fc.boolean(),
  model: fc.constantFrom<Op["model"]>("m", "m", "m2", "unknown"),
  tokens: fc.integer({ min: 0, max: 400 }),
  // A small pool of request ids: replays (same usage) and reuses (different usage) happen.
  rid: fc.integer({ min: 0, max: 25 }),
  variant: fc.constantFrom<0 | 1>(0, 0, 0, 1),
});
const setupArb: fc.Arbitrary<ProjectSetup> = fc.record({
  overdraft: fc.boolean(),
  credits: fc.integer({ min: 0, max: 3_000 }),
  keyCap: fc.option(fc.integer({ min: 1, max: 2_000 }), { nil: null }),
  customerCap: fc.option(fc.integer({ min: 1, max: 2_000 }), { nil: null }),
});

let n = 0;

/** A project as `s` describes it: two models, a Stripe customer, and its keys as principals (authenticated like a call). */
async function project(side: string, s: ProjectSetup) {
  const id = `rs-${side}-${++n}`;
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  if (s.overdraft) {
    await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", id).execute();
    ts.app.accounts.invalidatePlan(id);
  }
  await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 0n } });
  await admin.models.createModel({ modelId: `${id}/m2`, model: { inputPriceMicrosPerMillion: 3_000_000n, outputPriceMicrosPerMillion: 0n } });
  // A checkout gives the project a Stripe customer (overage of a plan billed in arrears is metered to it).
  await admin.billing.createCheckoutSession({ parent: `accounts/${id}`, item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
  if (s.credits) await ts.app.database.transaction((tx) => ledger.book(tx, { projectId: id, kind: "grant", amountMicros: s.credits, idempotencyKey: `grant:${id}` }, Date.now()));
  const create = (environment: KeyEnvironment, cap: number | null) =>
    admin.apiKeys.createApiKey({ parent: `accounts/${id}`, apiKey: { scopes: [Scope.READ, Scope.WRITE], environment, spendCapMicros: cap === null ? undefined : BigInt(cap) } });
  const live = await create(KeyEnvironment.LIVE, null);
  const capped = await create(KeyEnvironment.LIVE, s.keyCap);
  const child = await admin.apiKeys.createScopedKey({ parent: `accounts/${id}`, parentKey: capped.apiKey!.name, ttl: durationFromMs(600_000), spendCapMicros: BigInt(Math.min(700, s.keyCap ?? 700)), allowedMethods: ["/formstate.v1.UsageService/RecordUsage"] });
  const test = await create(KeyEnvironment.TEST, s.keyCap);
  const customer = await create(KeyEnvironment.LIVE, s.customerCap);
  const auth = (secret: string) => ts.app.apiKeys.authenticate(secret, "127.0.0.1");
  const callers: Record<Caller, ApiKeyPrincipal> = { live: await auth(live.secret), capped: await auth(capped.secret), child: await auth(child.secret), test: await auth(test.secret) };
  // Plans are read before the group commit; warm them so every call reaches the queue in the order it was made.
  await ts.app.accounts.planOf(id);
  const keyLabels = new Map<string, string>([
    [live.apiKey!.name.split("/").pop()!, "live"],
    [capped.apiKey!.name.split("/").pop()!, "capped"],
    [child.apiKey!.name.split("/").pop()!, "child"],
    [test.apiKey!.name.split("/").pop()!, "test"],
    [customer.apiKey!.name.split("/").pop()!, "customer"],
  ]);
  return { id, callers, customerKey: customer.apiKey!.name, keyLabels };
}
type Project = Awaited<ReturnType<typeof project>>;

function input(p: Project, op: Op): RecordInput {
  return {
    requestId: `r${op.rid}`,
    usage: { kind: "model", model: op.model === "unknown" ? "models/nobody/x" : `models/${p.id}/${op.model}`, inputTokens: op.tokens, outputTokens: 0 },
    apiKey: op.customer ? p.customerKey : undefined,
    attributes: op.variant ? { v: "1" } : {},
  };
}

/** Project ids and key ids replaced by stable labels, so two sides compare. */
function normalizer(ps: Project[]) {
  return (text: string) => {
    let out = text;
    ps.forEach((p, i) => {
      for (const [id, label] of p.keyLabels) out = out.split(id).join(`<key ${label}>`);
      out = out.split(p.id).join(`<project ${i}>`);
    });
    return out;
  };
}

async function answer(p: Project, op: Op, call: Promise<{ record: { cost_micros: number }; balance: unknown }>, norm: (s: string) => string) {
  try {
    const r = await call;
    return { ok: true, cost: r.record.cost_micros, balance: String(r.balance) };
  } catch (err) {
    if (!(err instanceof ConnectError)) throw err;
    return { ok: false, code: err.code, message: norm(err.rawMessage) };
  }
}

/** Everything a project ended with, ids replaced by labels. */
async function state(ps: Project[], norm: (s: string) => string) {
  const db = ts.app.database.db;
  const out: unknown[] = [];
  for (const p of ps) {
    const account = await db.selectFrom("account").select(["credit_balance_micros", "test_credit_balance_micros"]).where("project_id", "=", p.id).executeTakeFirstOrThrow();
    for (const env of ["live", "test"] as const) expect(String(await ledger.ledgerSum(db, p.id, env))).toBe(String(env === "live" ? account.credit_balance_micros : account.test_credit_balance_micros));
    const records = await db.selectFrom("usage_record").selectAll().where("project_id", "=", p.id).orderBy("create_time").orderBy("request_id").execute();
    const recordIds = new Map(records.map((r) => [r.record_id, `${r.environment}:${r.request_id}`]));
    const entries = await db.selectFrom("credit_transaction").selectAll().where("project_id", "=", p.id).orderBy("environment").orderBy("seq").execute();
    const keys = await db.selectFrom("api_key").select(["key_id", "spent_micros"]).where("project_id", "=", p.id).execute();
    const rollups = await db.selectFrom("usage_rollup").selectAll().where("project_id", "=", p.id).orderBy("environment").orderBy("hour").orderBy("subject_kind").orderBy("subject").execute();
    const metered = await db.selectFrom("meter_outbox").select(["identifier", "value_micros"]).where("project_id", "=", p.id).execute();
    const byRecord = (s: string) => s.replace(/[A-Za-z0-9_-]{16,}/g, (id) => recordIds.get(id) ?? id);
    out.push({
      balances: [String(account.credit_balance_micros), String(account.test_credit_balance_micros)],
      entries: entries.map((e) => [e.environment, Number(e.seq), e.kind, String(e.amount_micros), String(e.balance_after_micros), byRecord(norm(e.idempotency_key)), norm(e.description), e.usage_record_id ? recordIds.get(e.usage_record_id) : null]),
      records: records
        .map((r) => [r.environment, r.request_id, r.cost_micros, String(r.balance_after_micros), norm(r.model ?? ""), r.api_key_id ? p.keyLabels.get(r.api_key_id) : null, r.input_tokens])
        .sort((a, b) => String(a).localeCompare(String(b))),
      spent: keys.map((k) => [p.keyLabels.get(k.key_id), Number(k.spent_micros)]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      rollups: rollups.map((r) => [r.environment, r.subject_kind, norm(r.subject), r.input_tokens, r.requests, r.cost_micros, r.token_cost_micros]),
      metered: metered.map((m) => [byRecord(m.identifier.replace(/^fs-usage-/, "")), Number(m.value_micros)]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    });
  }
  return out;
}

describe("set-based group commit", () => {
  it("property: a run decided and written set-based ends exactly as the same usages recorded one at a time", async () => {
    await fc.assert(
      fc.asyncProperty(fc.tuple(setupArb, setupArb), fc.array(opArb, { minLength: 1, maxLength: 60 }), async (setups, ops) => {
        const usage = ts.app.usage;
        const set = [await project("set", setups[0]), await project("set", setups[1])];
        const one = [await project("one", setups[0]), await project("one", setups[1])];
        const normSet = normalizer(set);
        const normOne = normalizer(one);

        // All at once: one group commit, decided set-based.
        usage.setBased = true;
        const before = usage.commits.stats();
        const together = await Promise.all(ops.map((op) => answer(set[op.project], op, usage.record(set[op.project].callers[op.caller], `accounts/${set[op.project].id}`, input(set[op.project], op)), normSet)));
        const after = usage.commits.stats();
        expect(after.setUnits - before.setUnits).toBe(ops.length);
        expect(after.setFallbacks - before.setFallbacks).toBe(0);

        // One at a time through the per-unit path.
        usage.setBased = false;
        const alone = [];
        try {
          for (const op of ops) alone.push(await answer(one[op.project], op, usage.record(one[op.project].callers[op.caller], `accounts/${one[op.project].id}`, input(one[op.project], op)), normOne));
        } finally {
          usage.setBased = true;
        }
        expect(together).toEqual(alone);
        expect(await state(set, normSet)).toEqual(await state(one, normOne));
      }),
      { numRuns: 12 },
    );
    expect(fake).toBeDefined();
  }, 240_000);

  it("a run whose project has a hold due to expire goes the per-unit way: the hold comes back first, then each debit", async () => {
    const p = await project("hold", { overdraft: false, credits: 1_000, keyCap: null, customerCap: null });
    const usage = ts.app.usage;
    const caller = p.callers.live;
    const parent = `accounts/${p.id}`;
    // A hold of 900 of the 1,300 (grant + this month's 300), due to expire in 50 ms.
    await usage.authorize(caller, parent, { requestId: "h1", estimate: { kind: "cost", micros: 900 }, ttlMs: 50 });
    await new Promise((r) => setTimeout(r, 120));
    const before = usage.commits.stats();
    // Four records of 200 fit only once the hold's 900 is back (400 left while it is held).
    const results = await Promise.all([1, 2, 3, 4].map((i) => usage.record(caller, parent, input(p, { project: 0, caller: "live", customer: false, model: "m", tokens: 200, rid: i, variant: 0 }))));
    const after = usage.commits.stats();
    expect(after.setFallbacks - before.setFallbacks).toBeGreaterThanOrEqual(1);
    expect(results.map((r) => Number(r.balance))).toEqual([1_100, 900, 700, 500]);
    const entries = await ts.app.database.db.selectFrom("credit_transaction").select(["seq", "kind", "amount_micros"]).where("project_id", "=", p.id).where("environment", "=", "live").orderBy("seq").execute();
    expect(entries.map((e) => [e.kind, Number(e.amount_micros)])).toEqual([
      ["grant", 1_000],
      ["plan_credits", 300],
      ["hold", -900],
      ["hold_release", 900],
      ["usage_debit", -200],
      ["usage_debit", -200],
      ["usage_debit", -200],
      ["usage_debit", -200],
    ]);
  });
});
