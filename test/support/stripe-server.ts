/**
 * A test server billing against a fresh fake Stripe, started before the
 * file's tests and closed after them. The meter sender is slowed to a
 * 10-minute interval so tests drive it (`ts.app.billing`) when they mean to.
 */
import { afterAll, beforeAll } from "vitest";
import type { Plans } from "../../src/plans/plans.js";
import { FakeStripe } from "./fake-stripe.js";
import { type TestServer, startTestServer } from "./test-server.js";

export interface StripeServer {
  ts: TestServer;
  fake: FakeStripe;
}

/** Registers the hooks; `started` receives the server and the fake once both run. */
export function serverWithFakeStripe(plans: Plans, started: (s: StripeServer) => void): void {
  let s: Partial<StripeServer> = {};
  beforeAll(async () => {
    const fake = await FakeStripe.start();
    s = { fake, ts: await startTestServer(fake.env({ STRIPE_METER_INTERVAL_MS: "600000" }), { plans }) };
    started(s as StripeServer);
  });
  afterAll(async () => {
    await s.ts?.close();
    await s.fake?.close();
  });
}
