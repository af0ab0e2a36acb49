/**
 * The pure parts of billing with Stripe, with exact values: retry backoff,
 * which subscription decides the plan, plan and status for each Stripe
 * status, the success URL, the per-account lock, and the Stripe settings.
 */
import { describe, expect, it } from "vitest";
import { withSessionId } from "../../src/billing/checkout.js";
import { KeyedLock } from "../../src/billing/keyed-lock.js";
import { backoffMs, meterIdentifier } from "../../src/billing/outbox.js";
import { type SubscriptionSnapshot, accountStateOf, decides, planOfPrice, snapshotOf } from "../../src/billing/subscriptions.js";
import type { Stripe } from "../../src/billing/stripe-client.js";
import { ConfigError, loadConfig } from "../../src/config.js";

describe("backoffMs", () => {
  it("doubles from the base up to the max; jitter spans 0.8 to 1.2", () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4, 5, 12].map((n) => backoffMs(n, 1000, 8000, mid))).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    expect(backoffMs(1, 1000, 8000, () => 0)).toBe(800);
    expect(backoffMs(3, 1000, 8000, () => 0.999999)).toBe(4800);
    expect(backoffMs(0, 250, 8000, mid)).toBe(250);
  });

  it("identifiers are stable per usage record and within Stripe's 100 characters", () => {
    expect(meterIdentifier("abcdefghijklmnop")).toBe("fs-usage-abcdefghijklmnop");
  });
});

describe("subscriptions", () => {
  const snap = (id: string, status: Stripe.Subscription.Status): SubscriptionSnapshot => ({ id, customerId: "cus_1", status, priceId: null, planHint: null, periodStart: null, periodEnd: null, cancelAtPeriodEnd: false });

  it("decides: the stored one, a first one, or a live one replacing an ended one; never an ended one over a live one", () => {
    expect(decides({ subscriptionId: null, status: null }, snap("sub_a", "canceled"))).toBe(true);
    expect(decides({ subscriptionId: "sub_a", status: "active" }, snap("sub_a", "canceled"))).toBe(true);
    expect(decides({ subscriptionId: "sub_a", status: "canceled" }, snap("sub_b", "active"))).toBe(true);
    expect(decides({ subscriptionId: "sub_a", status: "incomplete_expired" }, snap("sub_b", "incomplete"))).toBe(true);
    expect(decides({ subscriptionId: "sub_a", status: "active" }, snap("sub_b", "trialing"))).toBe(true);
    expect(decides({ subscriptionId: "sub_b", status: "active" }, snap("sub_a", "canceled"))).toBe(false);
    expect(decides({ subscriptionId: "sub_b", status: "past_due" }, snap("sub_a", "unpaid"))).toBe(false);
  });

  it("maps every Stripe status to a plan tier and a stored status", () => {
    const statuses: Stripe.Subscription.Status[] = ["active", "trialing", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "paused"];
    expect(statuses.map((s) => [s, accountStateOf(s, "pro")])).toEqual([
      ["active", { planTier: "pro", subscriptionStatus: "active" }],
      ["trialing", { planTier: "pro", subscriptionStatus: "trialing" }],
      ["past_due", { planTier: "pro", subscriptionStatus: "past_due" }],
      ["unpaid", { planTier: "free", subscriptionStatus: "unpaid" }],
      ["canceled", { planTier: "free", subscriptionStatus: "canceled" }],
      ["incomplete", { planTier: "free", subscriptionStatus: "none" }],
      ["incomplete_expired", { planTier: "free", subscriptionStatus: "canceled" }],
      ["paused", { planTier: "free", subscriptionStatus: "unpaid" }],
    ]);
    expect(accountStateOf("active", undefined)).toEqual({ planTier: "free", subscriptionStatus: "active" });
  });

  it("a price names its plan; Checkout's metadata only when the price is not configured", () => {
    const prices = { pro: "price_p", enterprise: "price_e" };
    expect(planOfPrice(prices, "price_p", "enterprise")).toBe("pro");
    expect(planOfPrice(prices, "price_e", null)).toBe("enterprise");
    expect(planOfPrice(prices, "price_old", "pro")).toBe("pro");
    expect(planOfPrice(prices, "price_old", "free")).toBeUndefined();
    expect(planOfPrice({}, null, null)).toBeUndefined();
  });

  it("reads the period from the items (current API) or the subscription (older versions), in ms", () => {
    const base = { id: "sub_1", customer: { id: "cus_9" }, status: "active", cancel_at_period_end: true, metadata: { formstate_plan: "pro" } };
    const current = { ...base, items: { data: [{ price: { id: "price_p" }, current_period_start: 100, current_period_end: 200 }] } } as unknown as Stripe.Subscription;
    expect(snapshotOf(current)).toEqual({ id: "sub_1", customerId: "cus_9", status: "active", priceId: "price_p", planHint: "pro", periodStart: 100_000, periodEnd: 200_000, cancelAtPeriodEnd: true });
    const legacy = { ...base, current_period_start: 5, current_period_end: 6, items: { data: [{ price: { id: "price_p" } }] } } as unknown as Stripe.Subscription;
    expect(snapshotOf(legacy)).toMatchObject({ periodStart: 5_000, periodEnd: 6_000 });
  });
});

describe("withSessionId", () => {
  it("adds Stripe's placeholder as a query parameter, before any fragment", () => {
    expect(withSessionId("https://app.example/done")).toBe("https://app.example/done?session_id={CHECKOUT_SESSION_ID}");
    expect(withSessionId("https://app.example/done?a=1")).toBe("https://app.example/done?a=1&session_id={CHECKOUT_SESSION_ID}");
    expect(withSessionId("https://app.example/#/billing")).toBe("https://app.example/?session_id={CHECKOUT_SESSION_ID}#/billing");
  });
});

describe("KeyedLock", () => {
  it("runs one at a time per key in arrival order, survives failures, and lets other keys run meanwhile", async () => {
    const lock = new KeyedLock();
    const log: string[] = [];
    const step = (name: string, ms: number, fail = false) => async () => {
      log.push(`${name}+`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`${name}-`);
      if (fail) throw new Error(name);
      return name;
    };
    const results = await Promise.allSettled([lock.run("a", step("a1", 30, true)), lock.run("a", step("a2", 1)), lock.run("b", step("b1", 5))]);
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual(["a1", "a2", "b1"]);
    expect(log).toEqual(["a1+", "b1+", "b1-", "a1-", "a2+", "a2-"]);
  });
});

describe("Stripe settings", () => {
  const base = { FORMSTATE_DATA_DIR: "/tmp/formstate-config-test" };

  it("defaults", () => {
    expect(loadConfig(base).stripe).toEqual({
      secretKey: undefined,
      webhookSecret: undefined,
      apiHost: undefined,
      apiPort: undefined,
      apiProtocol: undefined,
      timeoutMs: 20_000,
      prices: { pro: undefined, enterprise: undefined },
      meterEventName: "formstate_usage",
      meterIntervalMs: 2_000,
      meterBackoffMs: 1_000,
      meterBackoffMaxMs: 300_000,
    });
  });

  it("names every bad Stripe variable at once", () => {
    let error: unknown;
    try {
      loadConfig({ ...base, STRIPE_SECRET_KEY: "sk_test_x", STRIPE_API_PROTOCOL: "ftp", STRIPE_PRICE_PRO: "pro", STRIPE_API_PORT: "0", STRIPE_METER_EVENT_NAME: "no spaces" });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must be set together",
      "STRIPE_API_PROTOCOL must be http or https",
      "STRIPE_METER_EVENT_NAME must be 1 to 100 letters, digits, _ . or -",
      'STRIPE_API_PORT="0" must be a whole number from 1 to 65535',
      "STRIPE_PRICE_PRO must be a Stripe price id (price_...)",
    ]);
  });
});
