/**
 * BatchRecordUsage through the Node client's recordUsageBatch: one answer per
 * item in order, a poisoned item (unknown model, invalid fields, credits
 * short, a request id reused for other usage) fails alone with the code and
 * details the single call would give, retries charge nothing, the access
 * policy is RecordUsage's, and (property) a batch leaves exactly what the
 * same usages recorded one by one leave: outcomes, balances, records, ledger.
 * fast-check prints the seed of a failing run; FC_SEED replays it.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { type BatchUsageOutcome, createFormstateClient, paymentRequired } from "../../src/client/node.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

// No included credits (every micro-USD is granted by the test), rate limits out of the way.
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { plans });
});
afterAll(async () => {
  await ts?.close();
});

/** A project with one private model at 1 micro-USD per input token, `credits` granted; its admin and developer clients. */
async function project(id: string, credits: number) {
  const admin = createFormstateClient({ baseUrl: ts.url, project: id, token: await ts.token({ projectId: id, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await admin.models.createModel({ modelId: `${id}/m`, model: { displayName: "m", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 0n, visibility: ModelVisibility.PRIVATE } });
  if (credits) await ts.app.database.transaction((tx) => ledger.book(tx, { projectId: id, kind: "grant", amountMicros: credits, idempotencyKey: `grant:${id}` }, Date.now()));
  const dev = createFormstateClient({ baseUrl: ts.url, project: id, token: await ts.token({ projectId: id, role: "developer" }) });
  return { admin, dev };
}

const model = (projectId: string, tokens: number, name = "m") => ({ case: "modelUsage" as const, value: { model: `models/${projectId}/${name}`, inputTokens: BigInt(tokens) } });

async function state(projectId: string) {
  const db = ts.app.database.db;
  const records = await db.selectFrom("usage_record").select(["request_id", "cost_micros", "balance_after_micros"]).where("project_id", "=", projectId).orderBy("request_id").execute();
  return { balance: await ts.app.accounts.creditBalance(projectId), ledgerSum: await ledger.ledgerSum(db, projectId), records };
}

describe("BatchRecordUsage", () => {
  it("answers per item, in order; a poisoned item fails alone with the single call's code and details", async () => {
    const { dev } = await project("batch", 1_000);
    const out = await dev.recordUsageBatch("accounts/batch", [
      { requestId: "a", usage: model("batch", 100) },
      { requestId: "unknown", usage: model("batch", 100, "nope") },
      { requestId: "b", usage: model("batch", 200) },
      // Invalid on its own (the tokens rule): INVALID_ARGUMENT for this item only.
      { requestId: "invalid", usage: model("batch", -1) },
      { requestId: "too-dear", usage: model("batch", 5_000) },
      { requestId: "a", usage: model("batch", 100) }, // a retry inside the batch: the first record
      { requestId: "a", usage: model("batch", 101) }, // the id reused for other usage
      { requestId: "c", usage: model("batch", 300) },
    ]);
    const summary = out.map((o) => [o.requestId, o.error ? Code[o.error.code] : Number(o.response.balanceMicros)]);
    expect(summary).toEqual([
      ["a", 900],
      ["unknown", "InvalidArgument"],
      ["b", 700],
      ["invalid", "InvalidArgument"],
      ["too-dear", "FailedPrecondition"],
      ["a", 900],
      ["a", "InvalidArgument"],
      ["c", 400],
    ]);
    expect(out[1].error!.rawMessage).toMatch(/model_usage.model: unknown model/);
    expect(out[3].error!.rawMessage).toMatch(/input_tokens/);
    expect(out[6].error!.rawMessage).toMatch(/request_id: was already used/);
    // The refused item carries the PaymentRequired detail the single call carries.
    const pay = paymentRequired(out[4].error);
    expect(pay?.reason).toBe(LimitReason.CREDITS_EXHAUSTED);
    expect(pay?.amountMicros).toBe(4_300n);
    expect(out[5].response!.usageRecord!.name).toBe(out[0].response!.usageRecord!.name);
    const s = await state("batch");
    expect(s.records.map((r) => [r.request_id, r.cost_micros])).toEqual([["a", 100], ["b", 200], ["c", 300]]);
    expect(s.balance).toBe(400);
    expect(s.ledgerSum).toBe(400);

    // The whole batch again: every answer the same, nothing charged twice.
    const again = await dev.recordUsageBatch("accounts/batch", [
      { requestId: "a", usage: model("batch", 100) },
      { requestId: "b", usage: model("batch", 200) },
      { requestId: "c", usage: model("batch", 300) },
    ]);
    expect(again.map((o) => o.response?.usageRecord?.name)).toEqual([out[0], out[2], out[7]].map((o) => o.response!.usageRecord!.name));
    expect(await state("batch")).toEqual(s);
  });

  it("refuses a malformed batch as a whole, and follows RecordUsage's access policy", async () => {
    const { admin, dev } = await project("batch-edges", 10_000);
    await expectCode(dev.usage.batchRecordUsage({ parent: "accounts/batch-edges", requests: [] }), Code.InvalidArgument, /requests/);
    const many = Array.from({ length: 1001 }, (_, i) => ({ requestId: `x${i}`, usage: model("batch-edges", 1) }));
    await expectCode(dev.usage.batchRecordUsage({ parent: "accounts/batch-edges", requests: many }), Code.InvalidArgument, /requests/);
    await expectCode(
      dev.usage.batchRecordUsage({ parent: "accounts/batch-edges", requests: [{ parent: "accounts/other", requestId: "x", usage: model("batch-edges", 1) }] }),
      Code.InvalidArgument,
      /requests\[0\]\.parent/,
    );
    // Another project's account: refused exactly as RecordUsage refuses it.
    const single = await expectCode(dev.usage.recordUsage({ parent: "accounts/batch", requestId: "x", usage: model("batch", 1) }), Code.NotFound);
    await expectCode(dev.usage.batchRecordUsage({ parent: "accounts/batch", requests: [{ requestId: "x", usage: model("batch", 1) }] }), single.code, new RegExp(single.rawMessage));
    // A user may not record usage; nor may a read-scope key. A write-scope key may.
    const user = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: "batch-edges", role: "user" }) });
    await expectCode(user.usage.batchRecordUsage({ parent: "accounts/batch-edges", requests: [{ requestId: "x", usage: model("batch-edges", 1) }] }), Code.PermissionDenied);
    const readKey = await admin.apiKeys.createApiKey({ parent: "accounts/batch-edges", apiKey: { displayName: "r", scopes: [Scope.READ] } });
    const reader = createFormstateClient({ baseUrl: ts.url, apiKey: readKey.secret });
    await expectCode(reader.usage.batchRecordUsage({ parent: "accounts/batch-edges", requests: [{ requestId: "x", usage: model("batch-edges", 1) }] }), Code.PermissionDenied);
    const writeKey = await admin.apiKeys.createApiKey({ parent: "accounts/batch-edges", apiKey: { displayName: "w", scopes: [Scope.WRITE] } });
    const writer = createFormstateClient({ baseUrl: ts.url, apiKey: writeKey.secret });
    const [ok] = await writer.recordUsageBatch("accounts/batch-edges", [{ requestId: "k1", usage: model("batch-edges", 7) }]);
    expect(ok.response?.usageRecord?.apiKey).toBe(writeKey.apiKey!.name);
    // 1,000 items is allowed and all are recorded.
    const full = await dev.recordUsageBatch("accounts/batch-edges", Array.from({ length: 1000 }, (_, i) => ({ requestId: `f${i}`, usage: model("batch-edges", 1) })));
    expect(full.filter((o) => o.error)).toEqual([]);
    expect((await state("batch-edges")).balance).toBe(10_000 - 7 - 1000);
    // On PostgreSQL the 1,000 items are ~14 round trips each in one transaction.
  }, 120_000);

  it("property: a batch leaves what the same usages recorded one by one leave", async () => {
    type Item = { id: number; tokens: number; bad: boolean };
    const itemArb = fc.record({ id: fc.integer({ min: 0, max: 25 }), tokens: fc.integer({ min: 0, max: 400 }), bad: fc.boolean() }).map((i) => ({ ...i, bad: i.bad && i.tokens % 5 === 0 }));
    let run = 0;
    const normalize = (o: BatchUsageOutcome) => (o.error ? { code: Code[o.error.code], message: o.error.rawMessage.replace(/accounts\/[^ /]+|models\/[^/ ]+/g, "X") } : { balance: o.response.balanceMicros, cost: o.response.usageRecord!.costMicros, id: o.response.usageRecord!.requestId });
    await fc.assert(
      fc.asyncProperty(fc.array(itemArb, { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 6_000 }), async (items: Item[], credits) => {
        run++;
        const a = `prop-b${run}`;
        const b = `prop-s${run}`;
        const batched = await project(a, credits);
        const single = await project(b, credits);
        const usages = (p: string) => items.map((i) => ({ requestId: `r${i.id}`, usage: model(p, i.tokens, i.bad ? "nope" : "m") }));
        const viaBatch = await batched.dev.recordUsageBatch(`accounts/${a}`, usages(a));
        const oneByOne: BatchUsageOutcome[] = [];
        for (const u of usages(b)) {
          try {
            oneByOne.push({ requestId: u.requestId, response: await single.dev.usage.recordUsage({ parent: `accounts/${b}`, ...u }) });
          } catch (err) {
            oneByOne.push({ requestId: u.requestId, error: ConnectError.from(err) });
          }
        }
        expect(viaBatch.map(normalize)).toEqual(oneByOne.map(normalize));
        const [sa, sb] = [await state(a), await state(b)];
        expect(sa).toEqual(sb);
        expect(sa.balance).toBe(sa.ledgerSum);
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 6), seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : 1515, endOnFailure: true },
    );
  }, 180_000);
});
