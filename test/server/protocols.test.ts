/**
 * One port for every client: @grpc/grpc-js, Connect's gRPC, gRPC-Web and
 * Connect transports, buf curl through reflection (every protocol, with and
 * without HTTP/2 prior knowledge), plain curl, and a browser's CORS preflight.
 * All must give the same answer.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService, GetAccountResponseSchema } from "../../gen/formstate/v1/account_service_pb.js";
import { bearer, type TestServer, startTestServer } from "../support/test-server.js";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");
const buf = join(root, "node_modules/.bin/buf");

let ts: TestServer;
let token: string;
let expected: unknown;

beforeAll(async () => {
  ts = await startTestServer();
  token = await ts.token({ projectId: "proto", role: "admin", subject: "proto-admin" });
  const c = ts.client(AccountService, ts.grpc(token));
  await c.createAccount({ account: { displayName: "Protocols", billingEmail: "ops@proto.test" } });
  expected = toJson(GetAccountResponseSchema, await c.getAccount({ name: "accounts/proto" }));
});
afterAll(async () => {
  await ts?.close();
});

function loadGrpcJs() {
  const def = protoLoader.loadSync(
    ["formstate/v1/account_service.proto", "grpc/health/v1/health.proto"],
    { includeDirs: [join(root, "proto"), join(root, "third_party")], longs: String, enums: String, defaults: true },
  );
  return grpc.loadPackageDefinition(def) as any;
}

describe("the same GetAccount answer from every client", () => {
  it("Connect's gRPC transport over HTTP/2", async () => {
    const res = await createClient(AccountService, ts.grpc(token)).getAccount({ name: "accounts/proto" });
    expect(res.account?.displayName).toBe("Protocols");
  });

  it("Connect protocol over HTTP/1.1", async () => {
    const res = await createClient(AccountService, ts.connect(token)).getAccount({ name: "accounts/proto" });
    expect(toJson(GetAccountResponseSchema, res)).toEqual(expected);
  });

  it("gRPC-Web over HTTP/1.1", async () => {
    const transport = createGrpcWebTransport({ baseUrl: ts.url, httpVersion: "1.1", interceptors: bearer(token) });
    const res = await createClient(AccountService, transport).getAccount({ name: "accounts/proto" });
    expect(toJson(GetAccountResponseSchema, res)).toEqual(expected);
  });

  it("@grpc/grpc-js with @grpc/proto-loader, auth by metadata, unary and Health.Watch streaming", async () => {
    const pkg = loadGrpcJs();
    const client = new pkg.formstate.v1.AccountService(`127.0.0.1:${ts.server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.add("authorization", `Bearer ${token}`);
    const res: any = await new Promise((resolve, reject) =>
      client.getAccount({ name: "accounts/proto" }, md, (err: unknown, r: unknown) => (err ? reject(err) : resolve(r))),
    );
    const want = expected as { account: Record<string, unknown> };
    expect(res.account.name).toBe(want.account.name);
    expect(res.account.displayName).toBe(want.account.displayName);
    expect(res.account.planTier).toBe(want.account.planTier);
    expect(res.account.creditBalanceMicros).toBe("0");

    // An error comes back with its gRPC status code.
    const err: any = await new Promise((resolve) => client.getAccount({ name: "accounts/other" }, md, (e: unknown) => resolve(e)));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    client.close();

    const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${ts.server.port}`, grpc.credentials.createInsecure());
    const first: any = await new Promise((resolve, reject) => {
      const call = health.watch({ service: "" });
      call.on("data", (m: unknown) => {
        resolve(m);
        call.cancel();
      });
      call.on("error", (e: any) => {
        if (e.code !== grpc.status.CANCELLED) reject(e);
      });
    });
    expect(first.status).toBe("SERVING");
    health.close();
  });

  it("plain curl speaking Connect's JSON over HTTP/1.1", async () => {
    const { stdout } = await run("curl", [
      "-sS",
      "-H", "content-type: application/json",
      "-H", `authorization: Bearer ${token}`,
      "-d", '{"name":"accounts/proto"}',
      `${ts.url}/formstate.v1.AccountService/GetAccount`,
    ]);
    expect(JSON.parse(stdout)).toEqual(expected);
  });

  const bufVariants: Array<[string, string[]]> = [
    ["grpc, h2c prior knowledge", ["--protocol", "grpc", "--http2-prior-knowledge"]],
    ["connect, h2c prior knowledge", ["--protocol", "connect", "--http2-prior-knowledge"]],
    ["grpcweb, h2c prior knowledge", ["--protocol", "grpcweb", "--http2-prior-knowledge"]],
    ["connect, HTTP/1.1", ["--protocol", "connect"]],
    ["grpcweb, HTTP/1.1", ["--protocol", "grpcweb"]],
  ];
  it.each(bufVariants)("buf curl via reflection (%s)", async (_label, flags) => {
    const { stdout } = await run(buf, [
      "curl", ...flags,
      "-H", `Authorization: Bearer ${token}`,
      "-d", '{"name":"accounts/proto"}',
      `${ts.url}/formstate.v1.AccountService/GetAccount`,
    ]);
    expect(JSON.parse(stdout)).toEqual(expected);
  });

  it.each(["grpc-v1", "grpc-v1alpha"])("buf curl lists every Formstate service's methods through reflection (%s)", async (reflectProtocol) => {
    const { stdout } = await run(buf, ["curl", "--http2-prior-knowledge", "--reflect-protocol", reflectProtocol, "--list-methods", ts.url]);
    for (const m of [
      "formstate.v1.AccountService/GetAccount",
      "formstate.v1.ApiKeyService/CreateApiKey",
      "formstate.v1.UsageService/RecordUsage",
      "formstate.v1.BillingService/ListPlans",
      "formstate.v1.AgentService/HireAgent",
      "formstate.v1.ModelService/ListModels",
      "grpc.health.v1.Health/Watch",
    ]) {
      expect(stdout).toContain(m);
    }
  });
});

describe("browsers", () => {
  it("answers a CORS preflight from an allowed origin, allowing our auth headers and exposing rate-limit headers", async () => {
    const res = await fetch(`${ts.url}/formstate.v1.AccountService/GetAccount`, {
      method: "OPTIONS",
      headers: {
        origin: "http://localhost:5173",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,x-api-key,content-type,connect-protocol-version",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    const allowed = res.headers.get("access-control-allow-headers")!.toLowerCase();
    for (const h of ["authorization", "x-api-key", "content-type", "connect-protocol-version", "x-grpc-web"]) expect(allowed).toContain(h);
    const exposed = res.headers.get("access-control-expose-headers")!.toLowerCase();
    for (const h of ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after", "x-request-id", "grpc-status"]) {
      expect(exposed).toContain(h);
    }
  });

  it("refuses a preflight from an origin that is not allowed", async () => {
    const res = await fetch(`${ts.url}/formstate.v1.AccountService/GetAccount`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(res.status).toBe(403);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("buf curl reaches a method of every service through reflection", () => {
  it.each<[string, string, (out: any) => void]>([
    ["AccountService/GetAccount", '{"name":"accounts/proto"}', (o) => expect(o.account.displayName).toBe("Protocols")],
    ["ApiKeyService/ListApiKeys", '{"parent":"accounts/proto"}', (o) => expect(o).toEqual({})],
    ["UsageService/GetUsageSummary", '{"parent":"accounts/proto"}', (o) => expect(o.totals ?? {}).toEqual({})],
    ["BillingService/ListPlans", "{}", (o) => expect(o.plans.map((p: { id: string }) => p.id)).toEqual(["free", "pro", "enterprise"])],
    ["AgentService/ListHires", '{"parent":"accounts/proto"}', (o) => expect(o).toEqual({})],
    ["ModelService/ListModels", "{}", (o) => expect(o.models ?? []).toEqual([])],
  ])("%s", async (method, body, check) => {
    const { stdout } = await run(buf, ["curl", "--http2-prior-knowledge", "-H", `Authorization: Bearer ${token}`, "-d", body, `${ts.url}/formstate.v1.${method}`]);
    check(JSON.parse(stdout));
  });

  it("an error comes back with its code and details", async () => {
    const err = await run(buf, ["curl", "--http2-prior-knowledge", "-d", '{"name":"accounts/proto"}', `${ts.url}/formstate.v1.AccountService/GetAccount`]).catch((e: { stderr: string; code: number }) => e);
    expect((err as { stderr: string }).stderr).toMatch(/unauthenticated/);
    expect((err as { stderr: string }).stderr).toMatch(/missing credential/);
  });
});

describe("an enum value the server does not know, in JSON", () => {
  /** A Connect JSON call by fetch: the HTTP status and the error code, if any. */
  async function post(path: string, bearerToken: string, body: unknown, contentType = "application/json") {
    const payload = JSON.stringify(body);
    const enveloped = contentType !== "application/json";
    const data = enveloped ? Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), Buffer.from(payload)]) : payload;
    if (enveloped) (data as Buffer).writeUInt32BE(Buffer.byteLength(payload), 1);
    const res = await fetch(`${ts.url}/${path}`, { method: "POST", headers: { "content-type": contentType, "connect-protocol-version": "1", authorization: `Bearer ${bearerToken}` }, body: data });
    const text = await res.text();
    return { status: res.status, text };
  }

  it("is INVALID_ARGUMENT naming the field, as over binary (protovalidate's defined_only), never read as the default: a typo of KEY_ENVIRONMENT_TEST made a live project", async () => {
    const newcomer = await ts.token({ projectId: "enum-typo", role: "admin", subject: "typist" });
    const typo = await post("formstate.v1.AccountService/CreateAccount", newcomer, { account: { displayName: "staging", environment: "KEY_ENVIRONMENT_TSET" } });
    expect(typo.status, typo.text).toBe(400);
    expect(JSON.parse(typo.text)).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("account.environment"), details: expect.arrayContaining([expect.objectContaining({ type: "google.rpc.BadRequest" })]) });
    expect(typo.text).toContain("KEY_ENVIRONMENT_TSET");
    // Nothing was created: the project can still be made a test project.
    const made = await post("formstate.v1.AccountService/CreateAccount", newcomer, { account: { displayName: "staging", environment: "KEY_ENVIRONMENT_TEST" } });
    expect(made.status, made.text).toBe(200);
    expect(JSON.parse(made.text).account.environment).toBe("KEY_ENVIRONMENT_TEST");
    // In a repeated enum too, and over gRPC-Web's JSON framing (the same rule for every JSON path).
    const scopes = await post("formstate.v1.ApiKeyService/CreateApiKey", token, { parent: "accounts/proto", apiKey: { displayName: "k", scopes: ["SCOPE_READ", "SCOPE_RAED"] } });
    expect(scopes.status, scopes.text).toBe(400);
    expect(scopes.text).toContain("api_key.scopes");
    const web = await post("formstate.v1.AccountService/CreateAccount", newcomer, { account: { environment: "LIVE" } }, "application/grpc-web+json");
    expect(web.status).toBe(200);
    expect(web.text).toMatch(/grpc-status: ?3/);
    expect(decodeURIComponent(web.text)).toContain("account.environment");
    // Unknown fields are still ignored (a newer client's extra field), and numbers are protovalidate's (defined_only).
    const extra = await post("formstate.v1.AccountService/GetAccount", token, { name: "accounts/proto", someFutureField: 1 });
    expect(extra.status, extra.text).toBe(200);
    const number = await post("formstate.v1.AccountService/CreateAccount", await ts.token({ projectId: "enum-number", role: "admin" }), { account: { environment: 7 } });
    expect(JSON.parse(number.text)).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("account.environment") });
  });
});
