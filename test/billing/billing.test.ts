/**
 * BillingService without Stripe: public plans, the subscription, operator
 * credit grants (platform admins; project admins only in development), the
 * ledger read back, and Stripe methods refusing clearly when unconfigured.
 */
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { BillingService, CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { PlanTier, SubscriptionStatus } from "../../gen/formstate/v1/common_pb.js";
import * as ledger from "../../src/ledger/ledger.js";
import { expectCode } from "../support/expect-error.js";
import { type TestIdp, startIdp } from "../support/idp.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let dev: TestServer;
let prod: TestServer;
let idp: TestIdp;

beforeAll(async () => {
  dev = await startTestServer();
  // Production: an external IdP, and grants only by the platform project's admins.
  idp = await startIdp();
  prod = await startTestServer({ FORMSTATE_ENV: "production", FORMSTATE_JWKS_URL: idp.jwksUrl, FORMSTATE_JWT_ISSUER: idp.issuer, FORMSTATE_JWT_AUDIENCE: idp.audience });
});
afterAll(async () => {
  await dev?.close();
  await prod?.close();
  idp?.close();
});

const tokenFor = (ts: TestServer, projectId: string, role: "admin" | "developer" | "user") =>
  ts === prod ? idp.sign({ sub: `${projectId}-${role}`, project_id: projectId, role }) : ts.token({ projectId, role, subject: `${projectId}-admin` });

async function account(ts: TestServer, projectId: string) {
  const token = await tokenFor(ts, projectId, "admin");
  await createClient(AccountService, ts.grpc(token)).createAccount({ account: {} });
  return createClient(BillingService, ts.grpc(token));
}

describe("plans and subscription", () => {
  it("ListPlans is public: no credential needed, cheapest first, limits included", async () => {
    const { plans } = await createClient(BillingService, dev.grpc()).listPlans({});
    expect(plans.map((p) => [p.id, p.tier, p.monthlyPriceMicros])).toEqual([
      ["free", PlanTier.FREE, 0n],
      ["pro", PlanTier.PRO, 49_000_000n],
      ["enterprise", PlanTier.ENTERPRISE, 999_000_000n],
    ]);
    expect(plans[0].agentSlots).toMatchObject({ limit: 1n, unlimited: false });
    expect(plans[2].apiKeyLimit).toMatchObject({ unlimited: true });
  });

  it("GetSubscription shows the Free plan with no subscription; another project's is NOT_FOUND", async () => {
    const b = await account(dev, "subs");
    const { subscription } = await b.getSubscription({ name: "accounts/subs/subscription" });
    expect(subscription).toMatchObject({ tier: PlanTier.FREE, status: SubscriptionStatus.NONE, stripeCustomerId: "" });
    await expectCode(b.getSubscription({ name: "accounts/other/subscription" }), Code.NotFound);
  });
});

describe("AddCredits", () => {
  it("in development a project admin grants its own account, idempotently; the ledger shows it", async () => {
    const b = await account(dev, "grants");
    const first = await b.addCredits({ parent: "accounts/grants", amountMicros: 2_500_000n, reason: "promo", requestId: "g1" });
    const again = await b.addCredits({ parent: "accounts/grants", amountMicros: 2_500_000n, reason: "promo", requestId: "g1" });
    expect(first.balanceMicros).toBe(2_500_000n);
    expect(again.creditTransaction?.name).toBe(first.creditTransaction?.name);
    expect(again.balanceMicros).toBe(2_500_000n);
    await expectCode(b.addCredits({ parent: "accounts/grants", amountMicros: 1n, reason: "x", requestId: "g1" }), Code.InvalidArgument, /request_id/);
    const { creditTransactions } = await b.listCreditTransactions({ parent: "accounts/grants", kinds: [CreditTransactionKind.GRANT] });
    expect(creditTransactions.map((t) => [t.amountMicros, t.balanceAfterMicros, t.description])).toEqual([[2_500_000n, 2_500_000n, "promo"]]);
    expect(await ledger.ledgerSum(dev.app.database.db, "grants")).toBe(await dev.app.accounts.creditBalance("grants"));
    // Developers and users cannot grant.
    const devRole = createClient(BillingService, dev.grpc(await dev.token({ projectId: "grants", role: "developer" })));
    await expectCode(devRole.addCredits({ parent: "accounts/grants", amountMicros: 1n, reason: "x", requestId: "g2" }), Code.PermissionDenied);
  });

  it("in production only the platform project's admins grant, to any account", async () => {
    const tenant = await account(prod, "tenant");
    await expectCode(tenant.addCredits({ parent: "accounts/tenant", amountMicros: 1n, reason: "self", requestId: "s" }), Code.PermissionDenied, /platform project/);
    const platform = createClient(BillingService, prod.grpc(await tokenFor(prod, "platform", "admin")));
    const res = await platform.addCredits({ parent: "accounts/tenant", amountMicros: 7n, reason: "support credit", requestId: "p1" });
    expect(res.balanceMicros).toBe(7n);
    await expectCode(platform.addCredits({ parent: "accounts/none", amountMicros: 7n, reason: "x", requestId: "p2" }), Code.NotFound);
  });
});

describe("Stripe methods without Stripe keys", () => {
  it("answer FAILED_PRECONDITION saying billing is not configured", async () => {
    const b = await account(dev, "nostripe");
    await expectCode(b.createCheckoutSession({ parent: "accounts/nostripe", item: { case: "plan", value: PlanTier.PRO }, successUrl: "https://app.example/ok", cancelUrl: "https://app.example/no" }), Code.FailedPrecondition, /billing is not configured/);
    await expectCode(b.processCheckout({ parent: "accounts/nostripe", sessionId: "cs_test_1" }), Code.FailedPrecondition, /billing is not configured/);
    await expectCode(b.createPortalSession({ parent: "accounts/nostripe", returnUrl: "https://app.example/" }), Code.FailedPrecondition, /billing is not configured/);
  });

  it("the webhook route answers 503 and changes nothing", async () => {
    const res = await fetch(`${dev.url}/webhooks/stripe`, { method: "POST", headers: { "stripe-signature": "t=1,v1=x" }, body: "{}" });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: "billing is not configured: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET" });
  });

  it("validates input first", async () => {
    const b = await account(dev, "badbill");
    await expectCode(b.createCheckoutSession({ parent: "accounts/badbill", item: { case: "plan", value: PlanTier.FREE }, successUrl: "https://a/", cancelUrl: "https://a/" }), Code.InvalidArgument, /plan/);
    await expectCode(b.addCredits({ parent: "accounts/badbill", amountMicros: 0n, reason: "x", requestId: "r" }), Code.InvalidArgument, /amount_micros/);
    await expectCode(b.listCreditTransactions({ parent: "accounts/badbill", pageSize: 2000 }), Code.InvalidArgument, /page_size/);
  });
});
