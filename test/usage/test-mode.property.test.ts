/**
 * Test-mode isolation as a property: for a random sequence of live and test
 * operations (usage, holds settled or released, grants) on one project, the
 * live side ends exactly as it would have with the live operations alone
 * (balance, live report totals, what is metered to Stripe), the sandbox
 * exactly as with the test operations alone, and each ledger sums to its
 * balance. Against a real server with real keys and the fake Stripe.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { FakeStripe } from "../support/fake-stripe.js";
import { serverWithFakeStripe } from "../support/stripe-server.js";
import type { TestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, sandboxCreditsMicros: 500 })));
let fake: FakeStripe;
let ts: TestServer;
serverWithFakeStripe(plans, (s) => ({ ts, fake } = s));

type Env = "live" | "test";
type Op =
  | { env: Env; kind: "use"; tokens: number }
  | { env: Env; kind: "hold"; micros: number; then: "settle" | "release"; tokens: number }
  | { env: Env; kind: "grant"; micros: number };

const env = fc.constantFrom<Env>("live", "test");
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ env, kind: fc.constant("use" as const), tokens: fc.integer({ min: 1, max: 1_500 }) }),
  fc.record({ env, kind: fc.constant("hold" as const), micros: fc.integer({ min: 1, max: 1_000 }), then: fc.constantFrom("settle" as const, "release" as const), tokens: fc.integer({ min: 1, max: 1_500 }) }),
  fc.record({ env, kind: fc.constant("grant" as const), micros: fc.integer({ min: 1, max: 3_000 }) }),
);

let n = 0;

/** A fresh project on a plan billed in arrears (overage metered), with a Stripe customer, a live and a test admin key. */
async function project() {
  const id = `tmp-${++n}`;
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", id).execute();
  ts.app.accounts.invalidatePlan(id);
  await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  await admin.billing.createCheckoutSession({ parent: `accounts/${id}`, item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
  const key = async (environment: KeyEnvironment) =>
    createFormstateClient({ baseUrl: ts.url, apiKey: (await admin.apiKeys.createApiKey({ parent: `accounts/${id}`, apiKey: { scopes: [Scope.ADMIN], environment } })).secret });
  return { id, admin, clients: { live: await key(KeyEnvironment.LIVE), test: await key(KeyEnvironment.TEST) } };
}

async function run(p: Awaited<ReturnType<typeof project>>, ops: Op[]) {
  const parent = `accounts/${p.id}`;
  const model = { case: "modelUsage" as const, value: { model: `models/${p.id}/m`, inputTokens: 0n } };
  for (const [i, o] of ops.entries()) {
    const c = p.clients[o.env];
    if (o.kind === "use") await c.usage.recordUsage({ parent, requestId: `u${i}`, usage: { ...model, value: { ...model.value, inputTokens: BigInt(o.tokens) } } });
    if (o.kind === "grant") await c.billing.addCredits({ parent, amountMicros: BigInt(o.micros), reason: "property", requestId: `g${i}` });
    if (o.kind === "hold") {
      const { authorization } = await c.usage.authorizeUsage({ parent, requestId: `h${i}`, estimate: { case: "estimatedCostMicros", value: BigInt(o.micros) } });
      if (o.then === "release") await c.usage.releaseAuthorization({ name: authorization!.name });
      else await c.usage.recordUsage({ parent, requestId: `s${i}`, authorization: authorization!.name, usage: { ...model, value: { ...model.value, inputTokens: BigInt(o.tokens) } } });
    }
  }
}

/** What one environment of a project ended with. */
async function outcome(p: Awaited<ReturnType<typeof project>>, e: Env) {
  const db = ts.app.database.db;
  const account = (await p.admin.accounts.getAccount({ name: `accounts/${p.id}` })).account!;
  const balance = e === "live" ? account.creditBalanceMicros : account.testCreditBalanceMicros;
  expect(BigInt(await ledger.ledgerSum(db, p.id, e))).toBe(balance);
  const summary = await p.admin.usage.getUsageSummary({ parent: `accounts/${p.id}`, environment: e === "live" ? KeyEnvironment.LIVE : KeyEnvironment.TEST });
  const metered = (await db.selectFrom("meter_outbox").select("value_micros").where("project_id", "=", p.id).execute()).map((r) => Number(r.value_micros)).sort((a, b) => a - b);
  return { balance, totals: summary.totals, metered: e === "live" ? metered : [] };
}

describe("test-mode isolation", () => {
  it("live and test operations interleaved end as each alone would", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 10 }), async (ops) => {
        const mixed = await project();
        await run(mixed, ops);
        const liveOnly = await project();
        await run(liveOnly, ops.filter((o) => o.env === "live"));
        const testOnly = await project();
        await run(testOnly, ops.filter((o) => o.env === "test"));
        expect(await outcome(mixed, "live")).toEqual(await outcome(liveOnly, "live"));
        expect(await outcome(mixed, "test")).toEqual(await outcome(testOnly, "test"));
        // Nothing a test key did was metered: the mixed project's outbox is the live-only one's.
        const testMetered = await ts.app.database.db.selectFrom("meter_outbox").select("identifier").where("project_id", "=", testOnly.id).execute();
        expect(testMetered).toEqual([]);
      }),
      { numRuns: 5, seed: 1702, endOnFailure: true },
    );
  }, 300_000);
});
