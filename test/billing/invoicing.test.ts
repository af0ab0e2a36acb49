/**
 * The invoicing rule: usage paid from prepaid credits is never metered to
 * Stripe; on plans billed in arrears only the overage is, and it is moved off
 * the balance (an `invoiced` entry) so a later purchase never pays it twice.
 * Against a real server, the real `stripe` SDK and the fake Stripe.
 */
import { createClient } from "@connectrpc/connect";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { invoicedPart } from "../../src/billing/invoicing.js";
import { createFormstateClient } from "../../src/client/node.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { FakeStripe } from "../support/fake-stripe.js";
import { serverWithFakeStripe } from "../support/stripe-server.js";
import type { TestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
let fake: FakeStripe;
let ts: TestServer;
serverWithFakeStripe(plans, (s) => ({ ts, fake } = s));

async function account(id: string, tier: "free" | "enterprise", credits: bigint) {
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await ts.app.database.db.updateTable("account").set({ plan_tier: tier }).where("project_id", "=", id).execute();
  ts.app.accounts.invalidatePlan(id);
  if (credits) await admin.billing.addCredits({ parent: `accounts/${id}`, amountMicros: credits, reason: "test", requestId: "seed" });
  await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  // A Checkout creates the Stripe customer.
  await admin.billing.createCheckoutSession({ parent: `accounts/${id}`, item: { case: "creditAmountMicros", value: 1_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
  const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId: id, role: "developer" })));
  const use = (requestId: string, micros: number) => usage.recordUsage({ parent: `accounts/${id}`, requestId, usage: { case: "modelUsage", value: { model: `models/${id}/m`, inputTokens: BigInt(micros) } } });
  const metered = async () => (await ts.app.database.db.selectFrom("meter_outbox").select("value_micros").where("project_id", "=", id).execute()).map((r) => Number(r.value_micros));
  return { admin, usage, use, metered };
}

describe("the invoicing rule", () => {
  it("prepaid plans: nothing is metered, not even a settlement that goes below zero", async () => {
    const { usage, use, metered } = await account("prepaid", "free", 1_000n);
    await use("a", 600);
    const hold = await usage.authorizeUsage({ parent: "accounts/prepaid", requestId: "h", estimate: { case: "estimatedCostMicros", value: 400n } });
    const settled = await usage.recordUsage({ parent: "accounts/prepaid", requestId: "s", authorization: hold.authorization!.name, usage: { case: "modelUsage", value: { model: "models/prepaid/m", inputTokens: 900n } } });
    expect(settled.balanceMicros).toBe(-500n);
    expect(await metered()).toEqual([]);
  });

  it("plans billed in arrears: credits pay first, only the overage is metered and moved to the invoice", async () => {
    const { admin, use, metered } = await account("arrears", "enterprise", 1_000n);
    expect((await use("a", 600)).balanceMicros).toBe(400n);
    expect(await metered()).toEqual([]);
    // 700 with 400 left: 400 from credits, 300 overage.
    expect((await use("b", 700)).balanceMicros).toBe(0n);
    expect((await use("c", 200)).balanceMicros).toBe(0n);
    expect(await metered()).toEqual([300, 200]);
    // Credits bought later pay later usage; they never pay the invoiced overage again.
    await admin.billing.addCredits({ parent: "accounts/arrears", amountMicros: 500n, reason: "top-up", requestId: "top" });
    expect((await use("d", 100)).balanceMicros).toBe(400n);
    expect(await metered()).toEqual([300, 200]);
    const invoiced = (await admin.billing.listCreditTransactions({ parent: "accounts/arrears", kinds: [CreditTransactionKind.INVOICED] })).creditTransactions;
    expect(invoiced.map((t) => t.amountMicros).sort()).toEqual([200n, 300n]);
    expect(await ledger.ledgerSum(ts.app.database.db, "arrears")).toBe(400);
    // What the sender reports is exactly the outbox.
    await ts.app.billing.meter!.pass();
    const customer = (await ts.app.database.db.selectFrom("billing_customer").select("stripe_customer_id").where("project_id", "=", "arrears").executeTakeFirstOrThrow()).stripe_customer_id;
    const sent = [...fake.accepted.values()].filter((e) => e.customer === customer).map((e) => Number(e.value));
    expect(sent.sort()).toEqual([200, 300]);
  });
});

describe("invoicedPart", () => {
  it("is the part of a debit below zero, never more than the cost, and 0 for prepaid plans", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: -1e12, max: 1e12 }), fc.integer({ min: 0, max: 1e12 }), (overdraftAllowed, balanceBefore, cost) => {
        const part = invoicedPart({ overdraftAllowed, balanceBefore, cost });
        const expected = overdraftAllowed ? Math.max(0, -(balanceBefore - cost)) - Math.max(0, -balanceBefore) : 0;
        expect(part).toBe(expected);
        expect(part).toBeGreaterThanOrEqual(0);
        expect(part).toBeLessThanOrEqual(cost);
      }),
      { numRuns: 2000 },
    );
  });
});
