/**
 * Payment required vs rate limited, over every protocol: credits or a spend
 * cap refuse with FAILED_PRECONDITION + PaymentRequired (LimitExceeded kept
 * alongside); Connect unary over plain HTTP answers 402 with the Connect
 * error body, which real Connect clients (connect-node over HTTP/1.1, the
 * Connect-Web transport over fetch) still decode with the right code and
 * details; gRPC and gRPC-Web keep HTTP 200; rate limiting stays 429 /
 * RESOURCE_EXHAUSTED; other FAILED_PRECONDITIONs stay 400.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { LimitExceededSchema, LimitReason, PaymentRequiredSchema } from "../../gen/formstate/v1/errors_pb.js";
import { RecordUsageRequestSchema, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { PAY_WITH_CHECKOUT } from "../../src/billing/payment-required.js";
import { createFormstateClient, limitAdvice, paymentRequired } from "../../src/client/node.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { bearer, type TestServer, startTestServer } from "../support/test-server.js";

// No included credits: the balance is exactly what the test grants.
const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
let ts: TestServer;
let dev: string;
const P = "payreq";
const model = `models/${P}/m`;
const record = (requestId: string, inputTokens: bigint) => ({ parent: `accounts/${P}`, requestId, usage: { case: "modelUsage" as const, value: { model, inputTokens } } });

beforeAll(async () => {
  ts = await startTestServer({}, { plans });
  const admin = await ts.token({ projectId: P, role: "admin" });
  const c = createFormstateClient({ baseUrl: ts.url, token: admin });
  await c.accounts.createAccount({ account: {} });
  // 1 micro-USD per input token.
  await c.models.createModel({ modelId: `${P}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  await c.billing.addCredits({ parent: `accounts/${P}`, amountMicros: 1_000n, reason: "test", requestId: "g1" });
  dev = await ts.token({ projectId: P, role: "developer" });
});
afterAll(async () => {
  await ts?.close();
});

describe("credits exhausted is payment required, not rate limiting", () => {
  it("gRPC: FAILED_PRECONDITION with PaymentRequired (amount, account, where to pay) and LimitExceeded for older clients", async () => {
    const usage = createClient(UsageService, ts.grpc(dev));
    const err = await expectCode(usage.recordUsage(record("big", 1_500n)), Code.FailedPrecondition, /credits exhausted/);
    expect(err.findDetails(PaymentRequiredSchema)[0]).toMatchObject({
      reason: LimitReason.CREDITS_EXHAUSTED,
      amountMicros: 500n,
      requestedMicros: 1_500n,
      availableMicros: 1_000n,
      account: `accounts/${P}`,
      payWith: [PAY_WITH_CHECKOUT],
    });
    expect(err.findDetails(LimitExceededSchema)[0]).toMatchObject({ reason: LimitReason.CREDITS_EXHAUSTED, creditsNeededMicros: 500n, requested: 1_500n });
    // The client helpers surface it.
    expect(paymentRequired(err)?.amountMicros).toBe(500n);
    expect(limitAdvice(err)).toMatchObject({ reason: LimitReason.CREDITS_EXHAUSTED, creditsNeededMicros: 500n, payment: { amountMicros: 500n } });
  });

  it("Connect JSON over plain HTTP: 402 with the Connect error body (code failed_precondition, the PaymentRequired detail)", async () => {
    const res = await fetch(`${ts.url}/formstate.v1.UsageService/RecordUsage`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev}` },
      body: JSON.stringify({ parent: `accounts/${P}`, requestId: "big-http", modelUsage: { model, inputTokens: "1500" } }),
    });
    expect(res.status).toBe(402);
    const body = (await res.json()) as { code: string; message: string; details: Array<{ type: string; value: string }> };
    expect(body.code).toBe("failed_precondition");
    expect(body.details.map((d) => d.type)).toEqual(expect.arrayContaining(["formstate.v1.PaymentRequired", "formstate.v1.LimitExceeded"]));
    expect(res.headers.get("formstate-payment-required")).toBe("credits_exhausted");
  });

  it("Connect binary over plain HTTP: 402 too", async () => {
    const res = await fetch(`${ts.url}/formstate.v1.UsageService/RecordUsage`, {
      method: "POST",
      headers: { "content-type": "application/proto", authorization: `Bearer ${dev}` },
      body: toBinary(RecordUsageRequestSchema, create(RecordUsageRequestSchema, record("big-bin", 1_500n))),
    });
    expect(res.status).toBe(402);
    expect(((await res.json()) as { code: string }).code).toBe("failed_precondition");
  });

  it("real Connect clients decode the 402: connect-node over HTTP/1.1 and the Connect-Web transport", async () => {
    for (const transport of [ts.connect(dev), createWebTransport({ baseUrl: ts.url, interceptors: bearer(dev) })]) {
      const err = await expectCode(createClient(UsageService, transport).recordUsage(record("big-client", 1_500n)), Code.FailedPrecondition, /credits exhausted/);
      expect(err.findDetails(PaymentRequiredSchema)[0]?.amountMicros).toBe(500n);
    }
  });

  it("gRPC-Web keeps HTTP 200 (the status travels in the trailers) and the Connect gRPC-Web client decodes it", async () => {
    const msg = toBinary(RecordUsageRequestSchema, create(RecordUsageRequestSchema, record("big-web", 1_500n)));
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    frame.set(msg, 5);
    const res = await fetch(`${ts.url}/formstate.v1.UsageService/RecordUsage`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${dev}` },
      body: frame,
    });
    expect(res.status).toBe(200);
    const text = Buffer.from(await res.arrayBuffer()).toString("latin1");
    expect(text).toMatch(/grpc-status: ?9/); // FAILED_PRECONDITION
    const web = createClient(UsageService, createGrpcWebTransport({ baseUrl: ts.url, httpVersion: "1.1", interceptors: bearer(dev) }));
    const err = await expectCode(web.recordUsage(record("big-web2", 1_500n)), Code.FailedPrecondition);
    expect(err.findDetails(PaymentRequiredSchema)).toHaveLength(1);
  });

  it("nothing was recorded or charged by the refused calls", async () => {
    const usage = createClient(UsageService, ts.grpc(dev));
    expect((await usage.listUsageRecords({ parent: `accounts/${P}` })).usageRecords).toHaveLength(0);
    const ok = await usage.recordUsage(record("fits", 1_000n));
    expect(ok.balanceMicros).toBe(0n);
  });
});

describe("other answers keep their status", () => {
  it("a key's spend cap is payment required with the capped key named", async () => {
    const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: P, role: "admin" }) });
    await admin.billing.addCredits({ parent: `accounts/${P}`, amountMicros: 10_000n, reason: "test", requestId: "g2" });
    const key = await admin.apiKeys.createApiKey({ parent: `accounts/${P}`, apiKey: { scopes: [Scope.WRITE], spendCapMicros: 100n } });
    const asKey = createFormstateClient({ baseUrl: ts.url, apiKey: key.secret });
    const err = await expectCode(asKey.usage.recordUsage(record("capped", 150n)), Code.FailedPrecondition, /spend cap/);
    expect(paymentRequired(err)).toMatchObject({ reason: LimitReason.SPEND_CAP, amountMicros: 50n, limitedResource: key.apiKey!.name });
    const res = await fetch(`${ts.url}/formstate.v1.UsageService/RecordUsage`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": key.secret },
      body: JSON.stringify({ parent: `accounts/${P}`, requestId: "capped-http", modelUsage: { model, inputTokens: "150" } }),
    });
    expect(res.status).toBe(402);
  });

  it("rate limiting stays RESOURCE_EXHAUSTED and HTTP 429, without PaymentRequired", async () => {
    const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: P, role: "admin" }) });
    const key = await admin.apiKeys.createApiKey({ parent: `accounts/${P}`, apiKey: { scopes: [Scope.READ], rateLimit: { requestsPerSecond: 1, burst: 1 } } });
    const get = () => fetch(`${ts.url}/formstate.v1.AccountService/GetAccount`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": key.secret }, body: JSON.stringify({ name: `accounts/${P}` }) });
    expect((await get()).status).toBe(200);
    const limited = await get();
    expect(limited.status).toBe(429);
    const body = (await limited.json()) as { code: string; details: Array<{ type: string }> };
    expect(body.code).toBe("resource_exhausted");
    expect(body.details.map((d) => d.type)).not.toContain("formstate.v1.PaymentRequired");
  });

  it("a FAILED_PRECONDITION that is not about money stays 400", async () => {
    const usage = createClient(UsageService, ts.grpc(dev));
    const hold = await usage.authorizeUsage({ parent: `accounts/${P}`, requestId: "h", estimate: { case: "estimatedCostMicros", value: 10n } });
    await usage.recordUsage({ ...record("settle", 5n), authorization: hold.authorization!.name });
    const res = await fetch(`${ts.url}/formstate.v1.UsageService/ReleaseAuthorization`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev}` },
      body: JSON.stringify({ name: hold.authorization!.name }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("failed_precondition");
  });
});
