/**
 * An expired hold gives its credits back at the moment it expires, as every
 * reader sees it (GetAccount, VerifyApiKey, CheckEligibility, ForecastUsage,
 * ListCreditTransactions, the next AuthorizeUsage), without waiting for the
 * background sweeper; the default hold lifetime is what the docs say; an
 * AuthorizeUsage replay answers the balance of the first answer.
 */
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { CreditTransactionKind } from "../../gen/formstate/v1/billing_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { ManualClock } from "../../src/clock.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { DEFAULT_HOLD_MS } from "../../src/usage/usage.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
const clock = new ManualClock(Date.now());
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { clock, plans });
  // The background sweeper must not be what returns the credits here.
  ts.app.usage.stop();
});
afterAll(async () => {
  await ts?.close();
});

async function project(id: string, credits: bigint) {
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await admin.billing.addCredits({ parent: `accounts/${id}`, amountMicros: credits, reason: "test", requestId: "seed" });
  await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId: id, role: "developer" })));
  return { admin, usage };
}

describe("expired holds on read", () => {
  it("every reader sees the credits back at the expiry instant, before any sweep; the ledger shows the release", async () => {
    const { admin, usage } = await project("expiry", 10_000n);
    const key = await admin.apiKeys.createApiKey({ parent: "accounts/expiry", apiKey: { scopes: [Scope.READ] } });
    const hold = await usage.authorizeUsage({ parent: "accounts/expiry", requestId: "h", ttl: durationFromMs(60_000), estimate: { case: "estimatedCostMicros", value: 8_000n } });
    expect(hold.balanceMicros).toBe(2_000n);
    clock.advance(59_999);
    expect((await admin.accounts.getAccount({ name: "accounts/expiry" })).account?.creditBalanceMicros).toBe(2_000n);
    clock.advance(1); // expire_time reached

    expect((await admin.accounts.getAccount({ name: "accounts/expiry" })).account?.creditBalanceMicros).toBe(10_000n);
    expect((await admin.apiKeys.verifyApiKey({ key: key.secret })).creditBalanceMicros).toBe(10_000n);
    const elig = await usage.checkEligibility({ parent: "accounts/expiry", check: { case: "modelUsage", value: { model: "models/expiry/m", inputTokens: 9_000n } } });
    expect(elig).toMatchObject({ eligible: true, balanceMicros: 10_000n });
    expect((await usage.forecastUsage({ parent: "accounts/expiry" })).balanceMicros).toBe(10_000n);
    const txs = await admin.billing.listCreditTransactions({ parent: "accounts/expiry" });
    expect(txs.creditTransactions[0]).toMatchObject({ kind: CreditTransactionKind.HOLD_RELEASE, amountMicros: 8_000n, balanceAfterMicros: 10_000n });
    // A new hold can use the returned credits.
    expect((await usage.authorizeUsage({ parent: "accounts/expiry", requestId: "h2", estimate: { case: "estimatedCostMicros", value: 9_000n } })).balanceMicros).toBe(1_000n);
    expect(await ledger.ledgerSum(ts.app.database.db, "expiry")).toBe(1_000);
    // Returned once: the sweeper finds nothing left to do for the first hold.
    expect(await ts.app.usage.expireHolds()).toBe(0);
  });

  it("the default lifetime is DEFAULT_HOLD_MS, 5 minutes, as the API reference says", async () => {
    const { usage } = await project("deflife", 1_000n);
    const hold = await usage.authorizeUsage({ parent: "accounts/deflife", requestId: "h", estimate: { case: "estimatedCostMicros", value: 10n } });
    expect(DEFAULT_HOLD_MS).toBe(5 * 60_000);
    expect(timestampMs(hold.authorization!.expireTime!) - timestampMs(hold.authorization!.createTime!)).toBe(DEFAULT_HOLD_MS);
    const { readFileSync } = await import("node:fs");
    const api = readFileSync(new URL("../../docs/api.md", import.meta.url), "utf8");
    expect(api).toMatch(/How long to hold, at most 1 hour; unset means 5 minutes/);
  });
});

describe("AuthorizeUsage replay", () => {
  it("returns the balance of the first answer, as a RecordUsage replay does", async () => {
    const { usage } = await project("replay", 10_000n);
    const req = { parent: "accounts/replay", requestId: "same", estimate: { case: "estimatedCostMicros" as const, value: 3_000n } };
    const first = await usage.authorizeUsage(req);
    expect(first.balanceMicros).toBe(7_000n);
    await usage.recordUsage({ parent: "accounts/replay", requestId: "other", usage: { case: "modelUsage", value: { model: "models/replay/m", inputTokens: 1_000n } } });
    const again = await usage.authorizeUsage(req);
    expect(again.authorization?.name).toBe(first.authorization?.name);
    expect(again.balanceMicros).toBe(7_000n);
  });
});
