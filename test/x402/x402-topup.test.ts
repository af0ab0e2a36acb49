/**
 * x402 as a funding rail, against a real server and a local facilitator over
 * HTTP: the 402 challenge (PAYMENT-REQUIRED, x402 v2), a paid retry credited
 * exactly once with PAYMENT-RESPONSE, a replayed payment refused, concurrent
 * duplicates credited once, a refused or mismatched payment credits nothing,
 * a facilitator that is down answers 503 and credits nothing (the same
 * payment goes through once it is back), and gRPC callers refused for
 * credits get the same x402 offer in their PaymentRequired detail. Test
 * mode (test keys, test-mode projects) is never offered or allowed a top-up.
 */
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService, KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService, CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { LimitReason, PaymentRequiredSchema } from "../../gen/formstate/v1/errors_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { type FakeFacilitator, startFakeFacilitator } from "../support/fake-facilitator.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

// No rate limit to speak of: every test here calls as the same subject, and the property alone makes dozens of
// calls in well under a second (the plan's 10/s with a burst of 20 refused some, depending on the machine's speed).
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 10_000, burst: 10_000 } })));
const P = "x402p";
const NETWORK = "eip155:84532";
const ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
let ts: TestServer;
let fac: FakeFacilitator;
let admin: string;
let user: string;

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64");
const unb64 = (v: string | null) => JSON.parse(Buffer.from(v ?? "", "base64").toString("utf8")) as Record<string, any>;

/** A signed x402 v2 payment for the requirements of a challenge (the fake facilitator checks the signature's prefix). */
function payment(accepted: Record<string, unknown>, signature = `0x${randomBytes(65).toString("hex")}`) {
  return {
    x402Version: 2,
    accepted,
    payload: {
      signature,
      authorization: { from: "0x857b06519E91e3A54538791bDbb0E22373e36b66", to: accepted.payTo, value: accepted.amount, validAfter: "0", validBefore: "9999999999", nonce: `0x${randomBytes(32).toString("hex")}` },
    },
  };
}

const topUp = (amount: number | string, headers: Record<string, string> = {}, project = P, token: string | null = user) =>
  fetch(`${ts.url}/x402/topup/${project}?amount=${amount}`, { method: "POST", headers: { ...(token && { authorization: `Bearer ${token}` }), ...headers } });

async function balance(): Promise<bigint> {
  const { account } = await createClient(AccountService, ts.connect(admin)).getAccount({ name: `accounts/${P}` });
  return account!.creditBalanceMicros;
}

async function purchases() {
  const res = await createClient(BillingService, ts.connect(admin)).listCreditTransactions({ parent: `accounts/${P}`, kinds: [CreditTransactionKind.PURCHASE] });
  return res.creditTransactions;
}

async function challenge(amount: number) {
  const res = await topUp(amount);
  expect(res.status).toBe(402);
  return unb64(res.headers.get("payment-required"));
}

beforeAll(async () => {
  fac = await startFakeFacilitator();
  ts = await startTestServer(
    { FORMSTATE_X402_FACILITATOR_URL: fac.url, FORMSTATE_X402_PAY_TO: PAY_TO, FORMSTATE_X402_NETWORK: NETWORK, FORMSTATE_X402_ASSET: ASSET, FORMSTATE_X402_FACILITATOR_TIMEOUT_MS: "3000" },
    { plans },
  );
  admin = await ts.token({ projectId: P, role: "admin" });
  user = await ts.token({ projectId: P, role: "user" });
  const c = createFormstateClient({ baseUrl: ts.url, token: admin });
  await c.accounts.createAccount({ account: {} });
  await c.models.createModel({ modelId: `${P}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
}, 60_000);
afterAll(async () => {
  await ts?.close();
  await fac?.close();
});

describe("the 402 challenge", () => {
  it("answers 402 with an x402 v2 PaymentRequired in PAYMENT-REQUIRED", async () => {
    const res = await topUp(2_500_000);
    expect(res.status).toBe(402);
    const pr = unb64(res.headers.get("payment-required"));
    expect(pr).toEqual({
      x402Version: 2,
      error: "PAYMENT-SIGNATURE header is required",
      resource: { url: `${ts.url}/x402/topup/${P}?amount=2500000`, description: expect.stringContaining(`accounts/${P}`), mimeType: "application/json" },
      accepts: [{ scheme: "exact", network: NETWORK, amount: "2500000", asset: ASSET, payTo: PAY_TO, maxTimeoutSeconds: 300, extra: { name: "USD Coin", version: "2" } }],
    });
    expect(fac.calls.verify).toBe(0);
  });

  it("refuses callers without a credential, other projects' top-ups and bad amounts, before any payment", async () => {
    expect((await topUp(1_000_000, {}, P, null)).status).toBe(401);
    expect((await topUp(1_000_000, {}, "someone-else")).status).toBe(404);
    expect((await topUp("1.5")).status).toBe(400);
    expect((await topUp(1)).status).toBe(400); // under the 10,000 micro-USD minimum
    expect((await fetch(`${ts.url}/x402/topup/${P}?amount=1000000`, { headers: { authorization: `Bearer ${user}` } })).status).toBe(405);
  });
});

describe("a paid retry", () => {
  it("is verified and settled by the facilitator, credited exactly once, and answered with PAYMENT-RESPONSE; a replay is refused", async () => {
    const before = await balance();
    const pr = await challenge(1_000_000);
    const header = b64(payment(pr.accepts[0]));
    const res = await topUp(1_000_000, { "payment-signature": header });
    expect(res.status).toBe(200);
    const settlement = unb64(res.headers.get("payment-response"));
    expect(settlement).toMatchObject({ success: true, network: NETWORK, payer: "0x857b06519E91e3A54538791bDbb0E22373e36b66" });
    expect(fac.settled.get(settlement.transaction)).toBe("1000000");
    const body = (await res.json()) as { amountMicros: number; balanceMicros: number; creditTransaction: string };
    expect(body.amountMicros).toBe(1_000_000);
    expect(await balance()).toBe(before + 1_000_000n);
    expect(BigInt(body.balanceMicros)).toBe(before + 1_000_000n);
    const bought = (await purchases()).filter((t) => t.idempotencyKey === `x402:${NETWORK}:${settlement.transaction}`);
    expect(bought).toHaveLength(1);
    expect(bought[0].name).toBe(body.creditTransaction);

    // The same payment again: refused before the facilitator is asked, nothing credited.
    const settles = fac.calls.settle;
    const replay = await topUp(1_000_000, { "payment-signature": header });
    expect(replay.status).toBe(409);
    expect(((await replay.json()) as { message: string }).message).toMatch(/already used/);
    expect(fac.calls.settle).toBe(settles);
    expect(await balance()).toBe(before + 1_000_000n);
  });

  it("concurrent copies of one payment credit once", async () => {
    const before = await balance();
    const pr = await challenge(300_000);
    const header = b64(payment(pr.accepts[0]));
    const answers = await Promise.all(Array.from({ length: 6 }, () => topUp(300_000, { "payment-signature": header })));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 409, 409, 409, 409, 409]);
    expect(await balance()).toBe(before + 300_000n);
  });

  it("a payment the facilitator refuses, or one that does not match the offer, credits nothing and gets a fresh challenge", async () => {
    const before = await balance();
    const pr = await challenge(1_000_000);
    const forged = await topUp(1_000_000, { "payment-signature": b64(payment(pr.accepts[0], "0xbad")) });
    expect(forged.status).toBe(402);
    expect(unb64(forged.headers.get("payment-required")).error).toMatch(/invalid_exact_evm_payload_signature/);
    // Paying 1 USD for a 5 USD top-up: refused here, the facilitator is never asked.
    const verifies = fac.calls.verify;
    const short = await topUp(5_000_000, { "payment-signature": b64(payment(pr.accepts[0])) });
    expect(short.status).toBe(402);
    expect(fac.calls.verify).toBe(verifies);
    const garbage = await topUp(1_000_000, { "payment-signature": "not base64 json!" });
    expect(garbage.status).toBe(400);
    expect(await balance()).toBe(before);
  });
});

describe("facilitator down", () => {
  it("answers 503 with nothing credited; once it is back the same payment is credited once", async () => {
    const before = await balance();
    const pr = await challenge(700_000);
    const header = b64(payment(pr.accepts[0]));
    fac.down = true;
    try {
      const res = await topUp(700_000, { "payment-signature": header });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { code: string }).code).toBe("unavailable");
      expect(await balance()).toBe(before);
    } finally {
      fac.down = false;
    }
    const retry = await topUp(700_000, { "payment-signature": header });
    expect(retry.status).toBe(200);
    expect(await balance()).toBe(before + 700_000n);
    expect((await topUp(700_000, { "payment-signature": header })).status).toBe(409);
  });
});

describe("gRPC and Connect callers", () => {
  it("a call refused for credits carries the same x402 offer in PaymentRequired, and the top-up URL in pay_with", async () => {
    const dev = await ts.token({ projectId: P, role: "developer" });
    const usage = createClient(UsageService, ts.grpc(dev));
    const have = await balance();
    const tokens = have + 12_345n; // 1 micro-USD per token: 12,345 short
    const err = await expectCode(
      usage.recordUsage({ parent: `accounts/${P}`, requestId: "too-big", usage: { case: "modelUsage", value: { model: `models/${P}/m`, inputTokens: tokens } } }),
      Code.FailedPrecondition,
      /credits exhausted/,
    );
    const detail = err.findDetails(PaymentRequiredSchema)[0];
    expect(detail.reason).toBe(LimitReason.CREDITS_EXHAUSTED);
    expect(detail.amountMicros).toBe(12_345n);
    const url = `${ts.url}/x402/topup/${P}?amount=12345`;
    expect(detail.payWith).toContain(url);
    expect(detail.x402).toMatchObject({ x402Version: 2, resource: { url, mimeType: "application/json" } });
    expect(detail.x402!.accepts).toHaveLength(1);
    expect(detail.x402!.accepts[0]).toMatchObject({ scheme: "exact", network: NETWORK, amount: "12345", asset: ASSET, payTo: PAY_TO, maxTimeoutSeconds: 300, extra: { name: "USD Coin", version: "2" } });
    // The offer is payable as it stands: paying it through the route lets the call through.
    const accepted = { ...detail.x402!.accepts[0], extra: detail.x402!.accepts[0].extra };
    const paid = await fetch(detail.x402!.resource!.url, { method: "POST", headers: { authorization: `Bearer ${dev}`, "payment-signature": b64(payment(accepted)) } });
    expect(paid.status).toBe(200);
    await usage.recordUsage({ parent: `accounts/${P}`, requestId: "too-big", usage: { case: "modelUsage", value: { model: `models/${P}/m`, inputTokens: tokens } } });
    expect(await balance()).toBe(0n);
  });

  it("test mode moves no real money: no offer on a sandbox refusal, and the route refuses test keys and test-mode projects", async () => {
    const T = "x402-test-project";
    const tAdmin = await ts.token({ projectId: T, role: "admin" });
    const c = createFormstateClient({ baseUrl: ts.url, token: tAdmin });
    await c.accounts.createAccount({ account: { environment: KeyEnvironment.TEST } });
    await c.models.createModel({ modelId: `${T}/m`, model: { inputPriceMicrosPerMillion: 2_000_000n } });
    // Past the sandbox allowance (100 USD by default) on a prepaid plan: refused, with no x402 offer.
    const err = await expectCode(
      c.usage.recordUsage({ parent: `accounts/${T}`, requestId: "too-big", usage: { case: "modelUsage", value: { model: `models/${T}/m`, inputTokens: 50_000_001n } } }),
      Code.FailedPrecondition,
      /sandbox credits exhausted/,
    );
    const detail = err.findDetails(PaymentRequiredSchema)[0];
    expect(detail.reason).toBe(LimitReason.CREDITS_EXHAUSTED);
    expect(detail.x402).toBeUndefined();
    // Where to pay: the sandbox grant, never a purchase.
    expect(detail.payWith).toEqual(["formstate.v1.BillingService/AddCredits"]);
    // The route: a test-mode project's user is 412, before any challenge or payment.
    const refused = await topUp(1_000_000, {}, T, tAdmin);
    expect(refused.status).toBe(412);
    expect(await refused.json()).toMatchObject({ code: "failed_precondition", message: expect.stringMatching(/test-mode project/) });
    expect(refused.headers.get("payment-required")).toBeNull();
    // A test key of a live project is 403: the live balance is not its to fund.
    const { secret } = await createClient(ApiKeyService, ts.connect(admin)).createApiKey({ parent: `accounts/${P}`, apiKey: { scopes: [Scope.WRITE], environment: KeyEnvironment.TEST } });
    const before = await balance();
    const byTestKey = await topUp(1_000_000, {}, P, secret);
    expect(byTestKey.status).toBe(403);
    expect(await balance()).toBe(before);
  });
});

describe("credited once (property)", () => {
  it("over random sequences of payments, replays, refused payments and facilitator outages, the balance moves by exactly the payments answered 200, each once", async () => {
    type Op = { kind: "pay" | "replay" | "forged" | "down" | "double"; amount: number; pick: number };
    const opArb = fc.record({ kind: fc.constantFrom<Op["kind"]>("pay", "replay", "forged", "down", "double"), amount: fc.integer({ min: 10_000, max: 50_000 }), pick: fc.nat() });
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 7 }), async (ops) => {
        const start = await balance();
        const sent: Array<{ header: string; amount: number; paid: boolean }> = [];
        let expected = 0n;
        for (const op of ops) {
          if (op.kind === "replay" && sent.length > 0) {
            const s = sent[op.pick % sent.length];
            const res = await topUp(s.amount, { "payment-signature": s.header });
            // A paid payment is refused; one that never went through (facilitator down) may go through now, once.
            if (s.paid) expect(res.status).toBe(409);
            else if (res.status === 200) {
              s.paid = true;
              expected += BigInt(s.amount);
            }
            continue;
          }
          const pr = await challenge(op.amount);
          const header = b64(payment(pr.accepts[0], op.kind === "forged" ? "0xbad" : undefined));
          const entry = { header, amount: op.amount, paid: false };
          sent.push(entry);
          if (op.kind === "down") fac.down = true;
          try {
            const answers = await Promise.all((op.kind === "double" ? [1, 2] : [1]).map(() => topUp(op.amount, { "payment-signature": header })));
            const ok = answers.filter((a) => a.status === 200).length;
            expect(ok).toBeLessThanOrEqual(1);
            if (op.kind === "forged" || op.kind === "down") expect(ok).toBe(0);
            if (ok === 1) {
              entry.paid = true;
              expected += BigInt(op.amount);
            }
          } finally {
            fac.down = false;
          }
        }
        expect(await balance()).toBe(start + expected);
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 4), seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined, endOnFailure: true },
    );
  }, 120_000);
});
