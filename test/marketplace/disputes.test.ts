/**
 * Disputes of a consumer's payment and the publisher's share, through the
 * Stripe webhook with the real SDK and the fake Stripe: an open dispute of
 * spent credits claws the share back; a dispute won gives it back, exactly;
 * a lost one keeps it taken; credits not yet spent take nothing from anyone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { FakeStripe, deliverEvent } from "../support/fake-stripe.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
let fake: FakeStripe;
let ts: TestServer;

beforeAll(async () => {
  fake = await FakeStripe.start();
  ts = await startTestServer(fake.env({ STRIPE_METER_INTERVAL_MS: "600000", FORMSTATE_PAYOUT_TICK_MS: "600000" }), { plans });
});
afterAll(async () => {
  await ts?.close();
  await fake?.close();
});

/** A publisher with a 2 USD agent at 75%, and a consumer that bought 10 USD and invoked it `n` times. */
async function setup(tag: string, n: number) {
  const pub = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: `${tag}-pub`, role: "admin" }) });
  await pub.accounts.createAccount({ account: {} });
  await pub.agents.createAgent({ agentId: `${tag}-agent`, agent: { pricePerInvocationMicros: 2_000_001n, visibility: AgentVisibility.PUBLIC, publisherShareBps: 7500 } });
  const buyer = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: `${tag}-buy`, role: "admin" }) });
  await buyer.accounts.createAccount({ account: {} });
  const { sessionId } = await buyer.billing.createCheckoutSession({ parent: `accounts/${tag}-buy`, item: { case: "creditAmountMicros", value: 10_000_000n }, successUrl: "http://localhost:3000/ok", cancelUrl: "http://localhost:3000/no" });
  const { charge } = fake.completeSession(sessionId);
  await buyer.billing.processCheckout({ parent: `accounts/${tag}-buy`, sessionId });
  await buyer.agents.hireAgent({ parent: `accounts/${tag}-buy`, agent: `agents/${tag}-agent` });
  for (let i = 0; i < n; i++) await buyer.agents.invokeAgent({ parent: `accounts/${tag}-buy`, target: { case: "agent", value: `agents/${tag}-agent` }, requestId: `r${i}`, operation: "run" });
  const earnings = async () => (await pub.billing.getPublisherEarnings({ parent: `accounts/${tag}-pub` })).total!;
  return { chargeId: String(charge!.id), earnings };
}

// floor(2,000,001 × 0.75) = 1,500,000 per invocation.
const PUB = 1_500_000;

describe("disputes and the publisher's share", () => {
  it("an open dispute claws back the spent share; winning it gives it back exactly", async () => {
    const { chargeId, earnings } = await setup("dw", 4);
    expect((await earnings()).earningsMicros).toBe(BigInt(4 * PUB));
    const dispute = fake.dispute(chargeId);
    expect((await deliverEvent(ts.url, fake.event("charge.dispute.created", dispute))).status).toBe(200);
    // 10 USD disputed, 1,999,996 unspent: the 8,000,004 spent is unfunded, all four invocations.
    expect(await earnings()).toMatchObject({ earningsMicros: 0n, grossMicros: 0n, clawbackMicros: BigInt(-4 * PUB) });
    expect((await deliverEvent(ts.url, fake.event("charge.dispute.closed", fake.closeDispute(String(dispute.id), "won")))).status).toBe(200);
    expect(await earnings()).toMatchObject({ earningsMicros: BigInt(4 * PUB), grossMicros: BigInt(4 * 2_000_001), platformFeeMicros: BigInt(4 * 500_001), clawbackMicros: 0n });
    // A repeated delivery changes nothing.
    expect((await deliverEvent(ts.url, fake.event("charge.dispute.closed", fake.closeDispute(String(dispute.id), "won")))).status).toBe(200);
    expect((await earnings()).earningsMicros).toBe(BigInt(4 * PUB));
  });

  it("a lost dispute keeps the share taken; unspent credits take nothing", async () => {
    const lost = await setup("dl", 2);
    const d = fake.dispute(lost.chargeId, 700); // 7 USD of 10; 5,999,998 unspent: 1,000,002 unfunded
    await deliverEvent(ts.url, fake.event("charge.dispute.created", d));
    await deliverEvent(ts.url, fake.event("charge.dispute.closed", fake.closeDispute(String(d.id), "lost")));
    // The last invocation, 1,000,002 of its 2,000,001: its publisher part floor(1,000,002 × 1,500,000 / 2,000,001).
    const part = Math.floor((1_000_002 * PUB) / 2_000_001);
    expect(await lost.earnings()).toMatchObject({ earningsMicros: BigInt(2 * PUB - part), clawbackMicros: BigInt(-part) });

    const unspent = await setup("du", 1);
    const d2 = fake.dispute(unspent.chargeId, 500); // 5 USD of the 7,999,999 unspent
    await deliverEvent(ts.url, fake.event("charge.dispute.created", d2));
    expect(await unspent.earnings()).toMatchObject({ earningsMicros: BigInt(PUB), clawbackMicros: 0n });
  });
});
