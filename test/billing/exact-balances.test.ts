/**
 * Money is int64 micro-USD end to end: a balance past 2^53 (where a JS
 * number stops being exact) is booked, stored and read back exactly, on
 * SQLite (bound as INTEGER, read with safeIntegers) and on PostgreSQL.
 * A real server; the balance is brought near 2^53 through the ledger itself
 * (AddCredits allows at most 1,000,000 USD a grant), then a grant over the
 * API takes it past, and every reader answers the exact figure.
 */
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { exactInteger } from "../../src/db/exact-integers.js";
import * as ledger from "../../src/ledger/ledger.js";
import { addMicros } from "../../src/ledger/micros.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
const TWO_53 = 2n ** 53n;
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { plans });
});
afterAll(async () => {
  await ts?.close();
});

describe("balances past 2^53", () => {
  it("a grant that takes the balance past 2^53 reads back exactly everywhere", async () => {
    const id = "big";
    const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
    await admin.accounts.createAccount({ account: {} });
    await ts.app.database.transaction((tx) =>
      ledger.book(tx, { projectId: id, kind: "adjustment", amountMicros: exactInteger(TWO_53 - 500n), idempotencyKey: "near-2^53", description: "test setup" }, Date.now()),
    );
    // 2^53 + 501 is odd: no double holds it.
    const expected = TWO_53 + 501n;
    expect(Number(expected).toString()).not.toBe(expected.toString());
    const granted = await admin.billing.addCredits({ parent: `accounts/${id}`, amountMicros: 1_001n, reason: "past 2^53", requestId: "g1" });
    expect(granted.balanceMicros).toBe(expected);
    expect(granted.creditTransaction!.balanceAfterMicros).toBe(expected);
    expect((await admin.accounts.getAccount({ name: `accounts/${id}` })).account!.creditBalanceMicros).toBe(expected);
    // The grant replays with the same answer.
    const replay = await admin.billing.addCredits({ parent: `accounts/${id}`, amountMicros: 1_001n, reason: "past 2^53", requestId: "g1" });
    expect(replay.creditTransaction!.balanceAfterMicros).toBe(expected);
    expect(replay.balanceMicros).toBe(expected);

    // Usage on top is debited exactly, and the metered answer, header included, says so.
    await admin.models.createModel({ modelId: `${id}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
    const key = await admin.apiKeys.createApiKey({ parent: `accounts/${id}`, apiKey: { scopes: [Scope.WRITE] } });
    let header = "";
    const usage = createClient(UsageService, ts.grpc(key.secret));
    const used = await usage.recordUsage(
      { parent: `accounts/${id}`, requestId: "u1", usage: { case: "modelUsage", value: { model: `models/${id}/m`, inputTokens: 3n } } },
      { onHeader: (h) => (header = h.get("x-credit-balance-micros") ?? "") },
    );
    expect(used.balanceMicros).toBe(expected - 3n);
    expect(header).toBe((expected - 3n).toString());
    const verified = await admin.apiKeys.verifyApiKey({ key: key.secret });
    expect(verified.creditBalanceMicros).toBe(expected - 3n);

    // The ledger listing and the ledger's sum agree to the micro-USD.
    const entries = (await admin.billing.listCreditTransactions({ parent: `accounts/${id}` })).creditTransactions;
    expect(entries.map((e) => e.balanceAfterMicros)).toEqual([expected - 3n, expected, TWO_53 - 500n]);
    expect(BigInt(await ledger.ledgerSum(ts.app.database.db, id))).toBe(expected - 3n);
    expect(BigInt(await ledger.balanceOf(ts.app.database.db, id))).toBe(expected - 3n);
  });

  it("a single grant above 2^53 is stored exactly, and small values stay plain numbers", async () => {
    const id = "big-one";
    const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: id, role: "admin" }) });
    await admin.accounts.createAccount({ account: {} });
    const amount = 2n ** 60n + 7n;
    const { row } = await ts.app.database.transaction((tx) => ledger.book(tx, { projectId: id, kind: "adjustment", amountMicros: amount, idempotencyKey: "huge" }, Date.now()));
    expect(row.balance_after_micros).toBe(amount);
    const stored = await ts.app.database.db.selectFrom("credit_transaction").select(["amount_micros", "balance_after_micros", "seq"]).where("project_id", "=", id).executeTakeFirstOrThrow();
    expect(stored).toEqual({ amount_micros: amount, balance_after_micros: amount, seq: 1 });
    expect((await admin.accounts.getAccount({ name: `accounts/${id}` })).account!.creditBalanceMicros).toBe(amount);
    // Taken back below 2^53, the balance is a plain number again.
    await ts.app.database.transaction((tx) => ledger.book(tx, { projectId: id, kind: "adjustment", amountMicros: -(amount - 5n), idempotencyKey: "back" }, Date.now()));
    expect(await ledger.balanceOf(ts.app.database.db, id)).toBe(5);
    expect(addMicros(Number.MAX_SAFE_INTEGER, 2)).toBe(TWO_53 + 1n);
    expect(addMicros(TWO_53 + 1n, -2)).toBe(Number.MAX_SAFE_INTEGER);
  });
});
