/**
 * Metering and the credits ledger against a real server: exact under
 * concurrency, idempotent, holds, reports checked against hand-computed
 * values, isolation, spend caps and model allowlists of keys, bad input.
 */
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { LimitExceededSchema, LimitReason, PaymentRequiredSchema } from "../../gen/formstate/v1/errors_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { AuthorizationState, UsageGranularity, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { bearer, type TestServer, startTestServer } from "../support/test-server.js";

// Rate limits and included credits are not what these tests measure: lift the first, zero the second.
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
const JUNE_10 = Date.UTC(2026, 5, 10);
const clock = new ManualClock(JUNE_10);
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { clock, plans });
});
afterAll(async () => {
  await ts?.close();
});

async function setup(projectId: string, credits: number) {
  const admin = await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` });
  await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
  const models = createClient(ModelService, ts.grpc(admin));
  await models.createModel({ modelId: `${projectId}/m1`, model: { displayName: "m1", inputPriceMicrosPerMillion: 2_000_000n, outputPriceMicrosPerMillion: 4_000_000n, visibility: ModelVisibility.PRIVATE } });
  await models.createModel({ modelId: `${projectId}/m2`, model: { displayName: "m2", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 10_000_000n, visibility: ModelVisibility.PRIVATE } });
  if (credits) await grant(projectId, credits);
  const dev = await ts.token({ projectId, role: "developer", subject: `${projectId}-dev` });
  return { admin, dev, usage: createClient(UsageService, ts.grpc(dev)) };
}

function grant(projectId: string, micros: number) {
  return ts.app.database.transaction((tx) => ledger.book(tx, { projectId, kind: "grant", amountMicros: micros, idempotencyKey: `test-grant:${Math.random()}` }, clock.now()));
}

async function balanceAndLedger(projectId: string) {
  const account = await ts.app.accounts.creditBalance(projectId);
  return { balance: account, ledgerSum: await ledger.ledgerSum(ts.app.database.db, projectId) };
}

const m = (projectId: string, name: string) => `models/${projectId}/${name}`;

describe("credits under concurrency", () => {
  it("64 clients x 200 usages with credits for half: exactly half succeed, balance 0, ledger sum = balance", async () => {
    const { dev } = await setup("race", 6_400 * 1_000);
    const clients = Array.from({ length: 64 }, () => createClient(UsageService, createGrpcTransport({ baseUrl: ts.url, interceptors: bearer(dev) })));
    let ok = 0;
    let exhausted = 0;
    const other: string[] = [];
    await Promise.all(
      clients.map(async (c, i) => {
        for (let j = 0; j < 200; j++) {
          try {
            // 500 input tokens at 2 micro-USD each: 1,000 micro-USD per call.
            await c.recordUsage({ parent: "accounts/race", requestId: `r-${i}-${j}`, usage: { case: "modelUsage", value: { model: m("race", "m1"), inputTokens: 500n } } });
            ok++;
          } catch (err) {
            const ce = ConnectError.from(err);
            if (ce.code === Code.FailedPrecondition && ce.findDetails(PaymentRequiredSchema)[0]?.reason === LimitReason.CREDITS_EXHAUSTED) exhausted++;
            else other.push(ce.message);
          }
        }
      }),
    );
    expect(other).toEqual([]);
    expect(ok).toBe(6_400);
    expect(exhausted).toBe(6_400);
    expect(await balanceAndLedger("race")).toEqual({ balance: 0, ledgerSum: 0 });
    // One project's writers run one at a time on either store; over PostgreSQL each of the 12,800 takes ~15 round trips (~110 s on this VM).
  }, /^postgres/.test(process.env.DATABASE_URL ?? "") ? 300_000 : 120_000);
});

describe("idempotency by request_id", () => {
  it("10 sequential and 10 concurrent sends charge once and answer the same", async () => {
    const { usage } = await setup("idem", 1_000_000);
    const req = { parent: "accounts/idem", requestId: "same", usage: { case: "modelUsage" as const, value: { model: m("idem", "m2"), outputTokens: 100n } } };
    const answers = [];
    for (let i = 0; i < 10; i++) answers.push(await usage.recordUsage(req));
    answers.push(...(await Promise.all(Array.from({ length: 10 }, () => usage.recordUsage(req)))));
    expect(new Set(answers.map((a) => a.usageRecord?.name)).size).toBe(1);
    expect(new Set(answers.map((a) => a.balanceMicros))).toEqual(new Set([999_000n]));
    expect(answers[0].usageRecord?.costMicros).toBe(1_000n);
    expect(await balanceAndLedger("idem")).toEqual({ balance: 999_000, ledgerSum: 999_000 });
    await expectCode(usage.recordUsage({ ...req, usage: { case: "modelUsage", value: { model: m("idem", "m2"), outputTokens: 101n } } }), Code.InvalidArgument, /request_id: was already used/);
  });

  it("carries the balance in a response header", async () => {
    const { usage } = await setup("hdr", 50_000);
    let header: string | null = null;
    await usage.recordUsage(
      { parent: "accounts/hdr", requestId: "h1", usage: { case: "modelUsage", value: { model: m("hdr", "m1"), inputTokens: 1000n } } },
      { onHeader: (h) => (header = h.get("x-credit-balance-micros")) },
    );
    expect(header).toBe("48000");
  });
});

describe("holds", () => {
  it("concurrent holds beyond the balance: only those that fit; settlement returns the difference; an expired hold returns its credits", async () => {
    const { usage } = await setup("holds", 10_000);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => usage.authorizeUsage({ parent: "accounts/holds", requestId: `a${i}`, estimate: { case: "estimatedCostMicros", value: 3_000n } })),
    );
    const held = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof usage.authorizeUsage>>>).value);
    expect(held).toHaveLength(3);
    for (const r of results.filter((r) => r.status === "rejected")) expect(ConnectError.from((r as PromiseRejectedResult).reason).code).toBe(Code.FailedPrecondition);
    expect(await balanceAndLedger("holds")).toEqual({ balance: 1_000, ledgerSum: 1_000 });

    // Settle the first at an actual cost of 1,000 (500 input tokens of m1): 2,000 comes back.
    const settled = await usage.recordUsage({
      parent: "accounts/holds",
      requestId: "settle-0",
      authorization: held[0].authorization!.name,
      usage: { case: "modelUsage", value: { model: m("holds", "m1"), inputTokens: 500n } },
    });
    expect(settled.usageRecord?.costMicros).toBe(1_000n);
    expect(settled.balanceMicros).toBe(3_000n);
    await expectCode(
      usage.recordUsage({ parent: "accounts/holds", requestId: "settle-again", authorization: held[0].authorization!.name, usage: { case: "modelUsage", value: { model: m("holds", "m1"), inputTokens: 1n } } }),
      Code.FailedPrecondition,
      /settled/,
    );

    // Release the second; let the third expire (default hold: 5 minutes).
    const released = await usage.releaseAuthorization({ name: held[1].authorization!.name });
    expect(released.authorization?.state).toBe(AuthorizationState.RELEASED);
    expect(released.balanceMicros).toBe(6_000n);
    clock.advance(5 * 60_000 + 1);
    expect(await ts.app.usage.expireHolds()).toBe(1);
    expect(await balanceAndLedger("holds")).toEqual({ balance: 9_000, ledgerSum: 9_000 });
    await expectCode(usage.releaseAuthorization({ name: held[2].authorization!.name }), Code.FailedPrecondition, /expired/);
  });

  it("a hold's ttl is honoured and a model estimate is priced", async () => {
    const { usage } = await setup("hold-ttl", 100_000);
    const a = await usage.authorizeUsage({ parent: "accounts/hold-ttl", requestId: "t", ttl: durationFromMs(2_000), estimate: { case: "modelUsage", value: { model: m("hold-ttl", "m2"), outputTokens: 1_000n } } });
    expect(a.authorization?.heldMicros).toBe(10_000n);
    expect(timestampMs(a.authorization!.expireTime!)).toBe(clock.now() + 2_000);
    clock.advance(2_001);
    await expectCode(
      usage.recordUsage({ parent: "accounts/hold-ttl", requestId: "late", authorization: a.authorization!.name, usage: { case: "modelUsage", value: { model: m("hold-ttl", "m2"), outputTokens: 1n } } }),
      Code.FailedPrecondition,
      /expired/,
    );
    expect(await balanceAndLedger("hold-ttl")).toEqual({ balance: 100_000, ledgerSum: 100_000 });
  });
});

describe("reports against hand-computed values", () => {
  it("summary, timeseries and forecast for a fixed data set", async () => {
    clock.set(JUNE_10);
    const { usage } = await setup("report", 20_000);
    const at = async (minutes: number, requestId: string, model: string, inputTokens: bigint, outputTokens: bigint) => {
      clock.set(JUNE_10 + minutes * 60_000);
      await usage.recordUsage({ parent: "accounts/report", requestId, usage: { case: "modelUsage", value: { model: m("report", model), inputTokens, outputTokens } } });
    };
    await at(30, "a", "m1", 1000n, 500n); // 2,000 + 2,000 = 4,000
    await at(75, "b", "m1", 2000n, 0n); // 4,000
    await at(105, "c", "m2", 0n, 1000n); // 10,000
    clock.set(JUNE_10 + 120 * 60_000);
    const ts0 = (min: number) => timestampFromMs(JUNE_10 + min * 60_000);

    const s = await usage.getUsageSummary({ parent: "accounts/report", startTime: ts0(0), endTime: ts0(120) });
    // Highest cost first.
    expect(s.models.map((x) => [x.model, x.inputTokens, x.outputTokens, x.requests, x.costMicros])).toEqual([
      [m("report", "m2"), 0n, 1000n, 1n, 10_000n],
      [m("report", "m1"), 3000n, 500n, 2n, 8_000n],
    ]);
    expect(s.totals).toMatchObject({ inputTokens: 3000n, outputTokens: 1500n, requests: 3n, costMicros: 18_000n });
    // A range with partial hours at both edges: only b (01:15) lies in [00:45, 01:30).
    const edge = await usage.getUsageSummary({ parent: "accounts/report", startTime: ts0(45), endTime: ts0(90) });
    expect(edge.totals).toMatchObject({ inputTokens: 2000n, requests: 1n, costMicros: 4_000n });
    // Default range: period start (June 1) to now.
    expect((await usage.getUsageSummary({ parent: "accounts/report" })).totals?.costMicros).toBe(18_000n);

    const hourly = await usage.getUsageTimeseries({ parent: "accounts/report", granularity: UsageGranularity.HOUR, startTime: ts0(0), endTime: ts0(180) });
    expect(hourly.points.map((p) => [Number(p.startTime!.seconds) * 1000 - JUNE_10, p.requests, p.costMicros])).toEqual([
      [0, 1n, 4_000n],
      [3_600_000, 2n, 14_000n],
      [7_200_000, 0n, 0n],
    ]);
    const daily = await usage.getUsageTimeseries({ parent: "accounts/report", granularity: UsageGranularity.DAY, startTime: ts0(0), model: m("report", "m1") });
    expect(daily.points.map((p) => [p.requests, p.costMicros])).toEqual([[2n, 8_000n]]);

    // Forecast at June 10 02:00: 218 hours of a 720-hour month have passed.
    const f = await usage.forecastUsage({ parent: "accounts/report" });
    expect(Number(f.periodStartTime!.seconds) * 1000).toBe(Date.UTC(2026, 5, 1));
    expect(Number(f.periodEndTime!.seconds) * 1000).toBe(Date.UTC(2026, 6, 1));
    expect(f.spentToDateMicros).toBe(18_000n);
    expect(f.projectedSpendMicros).toBe(59_450n); // 18,000 * 720 / 218 = 59,449.54
    expect(f.projectedInputTokens).toBe(9_908n); // 3,000 * 720 / 218 = 9,908.26
    expect(f.balanceMicros).toBe(2_000n);
    // 2,000 left at 18,000 per 218 h: 24.22 h = 87,200,000 ms from now.
    expect(Number(f.creditsExhaustedTime!.seconds) * 1000).toBe(JUNE_10 + 120 * 60_000 + 87_200_000);

    const page1 = await usage.listUsageRecords({ parent: "accounts/report", pageSize: 2 });
    const page2 = await usage.listUsageRecords({ parent: "accounts/report", pageSize: 2, pageToken: page1.nextPageToken });
    expect([...page1.usageRecords, ...page2.usageRecords].map((r) => r.requestId)).toEqual(["c", "b", "a"]);
    expect(page2.nextPageToken).toBe("");
    const onlyM2 = await usage.listUsageRecords({ parent: "accounts/report", model: m("report", "m2") });
    expect(onlyM2.usageRecords.map((r) => r.requestId)).toEqual(["c"]);
  });
});

describe("access", () => {
  it("a project never sees another's usage; a user reads usage but only developers record it", async () => {
    await setup("iso-a", 10_000);
    const b = await setup("iso-b", 10_000);
    await b.usage.recordUsage({ parent: "accounts/iso-b", requestId: "x", usage: { case: "modelUsage", value: { model: m("iso-b", "m1"), inputTokens: 1n } } });
    const aDev = createClient(UsageService, ts.grpc(await ts.token({ projectId: "iso-a", role: "developer" })));
    await expectCode(aDev.getUsageSummary({ parent: "accounts/iso-b" }), Code.NotFound);
    await expectCode(aDev.listUsageRecords({ parent: "accounts/iso-b" }), Code.NotFound);
    await expectCode(aDev.recordUsage({ parent: "accounts/iso-b", requestId: "y", usage: { case: "modelUsage", value: { model: m("iso-b", "m1"), inputTokens: 1n } } }), Code.NotFound);
    // Project A cannot price B's private model either.
    await expectCode(aDev.recordUsage({ parent: "accounts/iso-a", requestId: "y", usage: { case: "modelUsage", value: { model: m("iso-b", "m1"), inputTokens: 1n } } }), Code.InvalidArgument, /unknown model/);
    const bUser = createClient(UsageService, ts.grpc(await ts.token({ projectId: "iso-b", role: "user" })));
    expect((await bUser.getUsageSummary({ parent: "accounts/iso-b" })).totals?.requests).toBe(1n);
    await expectCode(bUser.recordUsage({ parent: "accounts/iso-b", requestId: "z", usage: { case: "modelUsage", value: { model: m("iso-b", "m1"), inputTokens: 1n } } }), Code.PermissionDenied, /needs role developer/);
  });
});

describe("keys on the metering path", () => {
  it("a scoped key's spend cap and model allowlist are enforced; the parent's budget counts the child's spend", async () => {
    const { admin } = await setup("capped", 1_000_000);
    const keys = createClient(ApiKeyService, ts.grpc(admin));
    const parent = await keys.createApiKey({ parent: "accounts/capped", apiKey: { scopes: [Scope.READ, Scope.WRITE], spendCapMicros: 20_000n } });
    const child = await keys.createScopedKey({
      parent: "accounts/capped",
      parentKey: parent.apiKey!.name,
      ttl: durationFromMs(600_000),
      spendCapMicros: 5_000n,
      allowedMethods: ["/formstate.v1.UsageService/RecordUsage"],
      allowedModels: ["capped/m1"],
    });
    const asChild = createClient(UsageService, createGrpcTransport({ baseUrl: ts.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", child.secret), next(req))] }));
    const rec = (id: string, model: string, tokens: bigint) => asChild.recordUsage({ parent: "accounts/capped", requestId: id, usage: { case: "modelUsage", value: { model: m("capped", model), inputTokens: tokens } } });
    await rec("c1", "m1", 2000n); // 4,000
    const err = await expectCode(rec("c2", "m1", 1000n), Code.FailedPrecondition, /spend cap/);
    expect(err.findDetails(LimitExceededSchema)[0]).toMatchObject({ reason: LimitReason.SPEND_CAP, limit: 5_000n, used: 4_000n, requested: 2_000n });
    expect(err.findDetails(PaymentRequiredSchema)[0]).toMatchObject({ reason: LimitReason.SPEND_CAP, amountMicros: 1_000n, requestedMicros: 2_000n, availableMicros: 1_000n, account: "accounts/capped", limitedResource: child.apiKey!.name });
    await expectCode(rec("c3", "m2", 1n), Code.PermissionDenied, /may not use/);
    const parentNow = await keys.getApiKey({ name: parent.apiKey!.name });
    expect(parentNow.apiKey?.spentMicros).toBe(4_000n);
    const verdict = await keys.verifyApiKey({ key: parent.secret });
    expect(verdict).toMatchObject({ spendCapped: true, remainingSpendMicros: 16_000n });
  });
});

describe("bad input is INVALID_ARGUMENT naming the field", () => {
  beforeAll(async () => {
    await setup("bad-in", 0);
  });
  it.each<[string, (u: ReturnType<typeof createClient<typeof UsageService>>) => Promise<unknown>, RegExp]>([
    ["negative tokens", (u) => u.recordUsage({ parent: "accounts/bad-in", requestId: "x", usage: { case: "modelUsage", value: { model: "models/bad-in/m1", inputTokens: -1n } } }), /input_tokens/],
    ["unknown model", (u) => u.recordUsage({ parent: "accounts/bad-in", requestId: "x", usage: { case: "modelUsage", value: { model: "models/nobody/none", inputTokens: 1n } } }), /model_usage\.model: unknown model/],
    ["missing request_id", (u) => u.recordUsage({ parent: "accounts/bad-in", usage: { case: "modelUsage", value: { model: "models/bad-in/m1" } } }), /request_id/],
    ["missing usage", (u) => u.recordUsage({ parent: "accounts/bad-in", requestId: "x" }), /usage/],
    ["oversized page", (u) => u.listUsageRecords({ parent: "accounts/bad-in", pageSize: 5000 }), /page_size/],
    ["reversed range (summary)", (u) => u.getUsageSummary({ parent: "accounts/bad-in", startTime: timestampFromMs(2000), endTime: timestampFromMs(1000) }), /end_time must be after start_time/],
    ["reversed range (records)", (u) => u.listUsageRecords({ parent: "accounts/bad-in", startTime: timestampFromMs(2000), endTime: timestampFromMs(1000) }), /end_time must be after start_time/],
    ["timeseries without granularity", (u) => u.getUsageTimeseries({ parent: "accounts/bad-in", startTime: timestampFromMs(JUNE_10) }), /granularity/],
    ["hold with zero estimate", (u) => u.authorizeUsage({ parent: "accounts/bad-in", requestId: "x", estimate: { case: "estimatedCostMicros", value: 0n } }), /estimated_cost_micros/],
    ["release with a bad name", (u) => u.releaseAuthorization({ name: "accounts/bad-in/holds/x" }), /name/],
    ["eligibility without a check", (u) => u.checkEligibility({ parent: "accounts/bad-in" }), /check/],
    ["forecast bad parent", (u) => u.forecastUsage({ parent: "bad-in" }), /parent/],
  ])("%s", async (_label, call, field) => {
    const u = createClient(UsageService, ts.grpc(await ts.token({ projectId: "bad-in", role: "developer" })));
    const err = await expectCode(call(u), Code.InvalidArgument);
    expect(err.rawMessage).toMatch(field);
  });
});

describe("eligibility", () => {
  it("says yes or no with the reason and what would allow it, and changes nothing", async () => {
    const { usage } = await setup("elig", 3_000);
    const yes = await usage.checkEligibility({ parent: "accounts/elig", check: { case: "modelUsage", value: { model: m("elig", "m1"), inputTokens: 1000n } } });
    expect(yes).toMatchObject({ eligible: true, estimatedCostMicros: 2_000n, balanceMicros: 3_000n });
    const no = await usage.checkEligibility({ parent: "accounts/elig", check: { case: "modelUsage", value: { model: m("elig", "m1"), inputTokens: 2000n } } });
    expect(no).toMatchObject({ eligible: false, reason: LimitReason.CREDITS_EXHAUSTED, estimatedCostMicros: 4_000n, creditsNeededMicros: 1_000n });
    expect(no.upgradeOptions.length).toBeGreaterThan(0);
    expect(await balanceAndLedger("elig")).toEqual({ balance: 3_000, ledgerSum: 3_000 });
  });
});
