/**
 * A @grpc/grpc-js client reads Formstate's typed error details from the
 * status (`grpc-status-details-bin`): RetryInfo and LimitExceeded on a
 * rate-limited call, LimitExceeded with credits needed and upgrade options
 * when credits run out. Auth by metadata (x-api-key, authorization).
 */
import { join } from "node:path";
import { isMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import { LimitExceededSchema, LimitReason, PaymentRequiredSchema, RetryInfoSchema } from "../../gen/formstate/v1/errors_pb.js";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema as GoogleRetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { grpcStatusDetails } from "../../docs/examples/grpc-js-status-details.js";
import { createFormstateClient } from "../../src/client/node.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const root = join(import.meta.dirname, "../..");
let ts: TestServer;
let token: string;
let pkg: any;

beforeAll(async () => {
  ts = await startTestServer();
  token = await ts.token({ projectId: "grpcjs", role: "admin", subject: "grpcjs-admin" });
  const admin = createFormstateClient({ baseUrl: ts.url, token });
  await admin.accounts.createAccount({ account: { displayName: "grpc-js" } });
  // $100 per million input tokens: 100,000 tokens cost $10, twice the Free plan's $5.
  await admin.models.createModel({ modelId: "grpcjs/big-1", model: { inputPriceMicrosPerMillion: 100_000_000n } });
  const def = protoLoader.loadSync(["formstate/v1/account_service.proto", "formstate/v1/usage_service.proto"], {
    includeDirs: [join(root, "proto"), join(root, "third_party")],
    longs: String,
    enums: String,
    defaults: true,
  });
  pkg = grpc.loadPackageDefinition(def);
});
afterAll(async () => {
  await ts?.close();
});

type GrpcError = grpc.ServiceError;
function call<T>(client: any, method: string, req: unknown, md: grpc.Metadata): Promise<T> {
  return new Promise((resolve, reject) => client[method](req, md, (err: GrpcError | null, res: T) => (err ? reject(err) : resolve(res))));
}
const fails = (p: Promise<unknown>) => p.then(() => expect.unreachable("the call succeeded")).catch((e: GrpcError) => e);

describe("@grpc/grpc-js reads typed error details from the status", () => {
  it("RetryInfo and LimitExceeded(RATE_LIMITED) on a rate-limited call, authenticated by x-api-key metadata", async () => {
    const admin = createFormstateClient({ baseUrl: ts.url, token });
    const { secret } = await admin.apiKeys.createApiKey({
      parent: "accounts/grpcjs",
      apiKey: { displayName: "slow", scopes: [Scope.READ], rateLimit: { requestsPerSecond: 1, burst: 1 } },
    });
    const accounts = new pkg.formstate.v1.AccountService(`127.0.0.1:${ts.server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.add("x-api-key", secret);
    const ok: any = await call(accounts, "getAccount", { name: "accounts/grpcjs" }, md);
    expect(ok.account.displayName).toBe("grpc-js");

    const err = await fails(call(accounts, "getAccount", { name: "accounts/grpcjs" }, md));
    accounts.close();
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const details = grpcStatusDetails(err.metadata);
    const retry = details.find((d) => isMessage(d, RetryInfoSchema));
    const limit = details.find((d) => isMessage(d, LimitExceededSchema));
    if (!retry || !isMessage(retry, RetryInfoSchema) || !limit || !isMessage(limit, LimitExceededSchema)) throw new Error("details missing");
    const delayMs = Number(retry.retryDelay?.seconds ?? 0n) * 1000 + (retry.retryDelay?.nanos ?? 0) / 1e6;
    expect(delayMs).toBeGreaterThan(0);
    expect(delayMs).toBeLessThanOrEqual(1000);
    expect(limit.reason).toBe(LimitReason.RATE_LIMITED);
    expect(limit.limit).toBe(1n);
    // The standard google.rpc.RetryInfo and ErrorInfo, for tooling that knows only those.
    const google = details.find((d) => isMessage(d, GoogleRetryInfoSchema));
    if (!google || !isMessage(google, GoogleRetryInfoSchema)) throw new Error("no google.rpc.RetryInfo");
    expect(Number(google.retryDelay?.seconds ?? 0n) * 1000 + (google.retryDelay?.nanos ?? 0) / 1e6).toBe(delayMs);
    const info = details.find((d) => isMessage(d, ErrorInfoSchema));
    expect(info && isMessage(info, ErrorInfoSchema) && info.reason).toBe("RATE_LIMITED");
    // The same answer carries the limit headers as metadata.
    expect(err.metadata.get("retry-after")).toHaveLength(1);
  });

  it("payment required: FAILED_PRECONDITION with PaymentRequired and LimitExceeded(CREDITS_EXHAUSTED), credits needed and upgrade options, authenticated by a bearer token", async () => {
    const usage = new pkg.formstate.v1.UsageService(`127.0.0.1:${ts.server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.add("authorization", `Bearer ${token}`);
    const err = await fails(
      call(usage, "recordUsage", { parent: "accounts/grpcjs", requestId: "too-big", modelUsage: { model: "models/grpcjs/big-1", inputTokens: "100000", outputTokens: "0" } }, md),
    );
    usage.close();
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    const [limit] = grpcStatusDetails(err.metadata).filter((d) => isMessage(d, LimitExceededSchema));
    if (!limit || !isMessage(limit, LimitExceededSchema)) throw new Error("no LimitExceeded detail");
    expect(limit.reason).toBe(LimitReason.CREDITS_EXHAUSTED);
    const [payment] = grpcStatusDetails(err.metadata).filter((d) => isMessage(d, PaymentRequiredSchema));
    if (!payment || !isMessage(payment, PaymentRequiredSchema)) throw new Error("no PaymentRequired detail");
    expect(payment).toMatchObject({ reason: LimitReason.CREDITS_EXHAUSTED, amountMicros: 5_000_000n, requestedMicros: 10_000_000n, account: "accounts/grpcjs" });
    // $10 asked, the month's $5 of Free credits available.
    expect(limit.creditsNeededMicros).toBe(5_000_000n);
    expect(limit.upgradeOptions.map((o) => o.tier)).toContain(PlanTier.ENTERPRISE);
  });

  it("any other error carries only an ErrorInfo with its reason", async () => {
    const accounts = new pkg.formstate.v1.AccountService(`127.0.0.1:${ts.server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.add("authorization", `Bearer ${token}`);
    const err = await fails(call(accounts, "getAccount", { name: "accounts/someone-else" }, md));
    accounts.close();
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    const details = grpcStatusDetails(err.metadata);
    expect(details).toHaveLength(1);
    const [info] = details;
    if (!isMessage(info, ErrorInfoSchema)) throw new Error(`not an ErrorInfo: ${info.$typeName}`);
    expect(info.reason).toBe("NOT_FOUND");
    expect(info.domain).toBe("formstate.dev");
    // grpc-message is percent-encoded only where the gRPC spec says: grpc-js users read '/' and ':' plainly.
    expect(err.details).toContain("accounts/someone-else");
    expect(err.details).not.toMatch(/%[0-9A-F]{2}/);
  });

  it("a validation failure carries google.rpc.BadRequest field violations, and its message reads plainly", async () => {
    const accounts = new pkg.formstate.v1.AccountService(`127.0.0.1:${ts.server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.add("authorization", `Bearer ${token}`);
    const err = await fails(call(accounts, "getAccount", { name: "accounts/Not Valid;50%" }, md));
    accounts.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^name: /);
    expect(err.details).not.toMatch(/%3A|%2F|%3B/);
    const [bad] = grpcStatusDetails(err.metadata).filter((d) => isMessage(d, BadRequestSchema));
    if (!bad || !isMessage(bad, BadRequestSchema)) throw new Error("no BadRequest detail");
    expect(bad.fieldViolations.map((v) => v.field)).toEqual(["name"]);
    expect(bad.fieldViolations[0].description).toMatch(/pattern/);
  });
});
