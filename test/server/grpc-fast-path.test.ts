/**
 * The unary gRPC fast path answers exactly as Connect's handler does: the
 * same raw HTTP/2 requests (good calls, auth and validation errors with
 * details, bad frames, size limits, grpc-timeout, compression) sent to a
 * server with the fast path and to one without give the same status,
 * headers, trailers and body. It takes only unary application/grpc calls;
 * deadlines abort `ctx.signal` as Connect's do.
 */
import http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { create, createFileRegistry, type DescMessage, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService, GetAccountRequestSchema } from "../../gen/formstate/v1/account_service_pb.js";
import { ModelService, ModelVisibility, ListModelsRequestSchema } from "../../gen/formstate/v1/model_service_pb.js";
import { HealthCheckRequestSchema } from "../../gen/grpc/health/v1/health_pb.js";
import { createGrpcFastPath, grpcFastPathServed } from "../../src/server/fast-path/grpc-unary.js";
import { type UnaryRoutes, recordUnaryRoutes } from "../../src/server/fast-path/unary-routes.js";
import { listen } from "../../src/server/listener.js";
import { ManualClock } from "../../src/clock.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { bearer, type TestServer, startTestServer } from "../support/test-server.js";

interface Raw {
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: Buffer;
}

// Differ between two servers by nature: time, ids, and how full each one's rate-limit bucket is (present, not compared).
const VARYING = new Set(["date", "x-request-id", "x-ratelimit-remaining"]);
function clean(h: http2.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(":") && v !== undefined) out[k] = VARYING.has(k) ? "(varies)" : String(v);
  if (h[":status"] !== undefined) out[":status"] = String(h[":status"]);
  return out;
}

function rawCall(url: string, path: string, headers: Record<string, string>, body: Buffer): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => (head = h));
    req.on("trailers", (t) => (trailers = t));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      resolve({ status: Number(head[":status"]), headers: clean(head), trailers: clean(trailers), body: Buffer.concat(chunks) });
    });
    req.on("error", reject);
    req.end(body);
  });
}

function frame(schema: DescMessage, init: Record<string, unknown>, flags = 0): Buffer {
  const bytes = toBinary(schema, create(schema, init));
  const f = Buffer.alloc(5 + bytes.length);
  f[0] = flags;
  f.writeUInt32BE(bytes.length, 1);
  f.set(bytes, 5);
  return f;
}

async function withFastPath<T>(on: boolean, fn: () => Promise<T>): Promise<T> {
  const before = process.env.FORMSTATE_GRPC_FAST_PATH;
  process.env.FORMSTATE_GRPC_FAST_PATH = on ? "1" : "0";
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.FORMSTATE_GRPC_FAST_PATH;
    else process.env.FORMSTATE_GRPC_FAST_PATH = before;
  }
}

const T0 = Date.UTC(2026, 10, 25, 12);
// The clocks stand still, so a bucket would never refill: lift the limit (its headers are still compared).
const plans = new Plans(defaultPlans.map((p) => ({ ...p, rateLimit: { requestsPerSecond: 1_000_000, burst: 1_000_000 } })));

describe("fast path and Connect answer the same bytes", () => {
  let fast: TestServer;
  let slow: TestServer;
  const tokens = new Map<TestServer, string>();
  beforeAll(async () => {
    // One fixed clock each, at the same time: stored timestamps (and so the answers) are the same on both.
    fast = await withFastPath(true, () => startTestServer({ FORMSTATE_MAX_MESSAGE_BYTES: "4096" }, { clock: new ManualClock(T0), plans }));
    slow = await withFastPath(false, () => startTestServer({ FORMSTATE_MAX_MESSAGE_BYTES: "4096" }, { clock: new ManualClock(T0), plans }));
    for (const ts of [fast, slow]) {
      const token = await ts.token({ projectId: "same", role: "admin", subject: "same-admin" });
      tokens.set(ts, token);
      await createClient(AccountService, ts.grpc(token)).createAccount({ account: { displayName: "Same" } });
      const models = createClient(ModelService, ts.grpc(token));
      // Enough models that ListModels answers more than Connect's 1 KiB compression threshold.
      for (let i = 0; i < 12; i++) {
        await models.createModel({ modelId: `same/model-${i}`, model: { displayName: `A model with a long enough display name ${i}`, inputPriceMicrosPerMillion: 1n, outputPriceMicrosPerMillion: 2n, visibility: ModelVisibility.PRIVATE } });
      }
    }
  });
  afterAll(async () => {
    await fast?.close();
    await slow?.close();
  });

  const get = frame(GetAccountRequestSchema, { name: "accounts/same" });
  const cases: [string, string, (token: string) => Record<string, string>, Buffer][] = [
    ["a good call", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), get],
    ["content-type application/grpc+proto", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}`, "content-type": "application/grpc+proto" }), get],
    ["no credential (UNAUTHENTICATED with details)", "/formstate.v1.AccountService/GetAccount", () => ({}), get],
    ["an invalid API key", "/formstate.v1.AccountService/GetAccount", () => ({ "x-api-key": "fs_live_nope" }), get],
    ["another project (PERMISSION_DENIED or NOT_FOUND)", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), frame(GetAccountRequestSchema, { name: "accounts/other" })],
    ["a validation failure", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), frame(GetAccountRequestSchema, { name: "" })],
    ["a public method without credential", "/grpc.health.v1.Health/Check", () => ({}), frame(HealthCheckRequestSchema, {})],
    ["garbage bytes in the frame", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff])],
    ["an empty body", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), Buffer.alloc(0)],
    ["an incomplete envelope", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), get.subarray(0, get.length - 2)],
    ["two messages", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), Buffer.concat([get, get])],
    ["a compressed flag without grpc-encoding", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), frame(GetAccountRequestSchema, { name: "accounts/same" }, 1)],
    ["a message over the size limit", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}` }), frame(GetAccountRequestSchema, { name: `accounts/${"x".repeat(5000)}` })],
    ["a bad grpc-timeout", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}`, "grpc-timeout": "soon" }), get],
    ["a grpc-timeout over the maximum", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}`, "grpc-timeout": "2H" }), get],
    ["a good grpc-timeout", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}`, "grpc-timeout": "5S" }), get],
    ["an unknown method", "/formstate.v1.AccountService/Nope", (t) => ({ authorization: `Bearer ${t}` }), get],
    ["gzip accepted, small answer", "/formstate.v1.AccountService/GetAccount", (t) => ({ authorization: `Bearer ${t}`, "grpc-accept-encoding": "gzip" }), get],
    ["gzip accepted, large answer", "/formstate.v1.ModelService/ListModels", (t) => ({ authorization: `Bearer ${t}`, "grpc-accept-encoding": "identity, gzip" }), frame(ListModelsRequestSchema, { pageSize: 50 })],
    ["br accepted", "/formstate.v1.ModelService/ListModels", (t) => ({ authorization: `Bearer ${t}`, "grpc-accept-encoding": "br,gzip" }), frame(ListModelsRequestSchema, { pageSize: 50 })],
  ];

  for (const [name, path, headers, body] of cases) {
    it(name, async () => {
      const servedBefore = grpcFastPathServed();
      const a = await rawCall(fast.url, path, headers(tokens.get(fast)!), body);
      const servedByFast = grpcFastPathServed() - servedBefore;
      const b = await rawCall(slow.url, path, headers(tokens.get(slow)!), body);
      expect(grpcFastPathServed() - servedBefore).toBe(servedByFast); // the Connect-only server never uses it
      expect(a.headers).toEqual(b.headers);
      expect(a.trailers).toEqual(b.trailers);
      expect(a.body.toString("hex")).toBe(b.body.toString("hex"));
      if (path.endsWith("/Nope")) expect(servedByFast).toBe(0);
      else expect(servedByFast).toBe(1);
    });
  }

  it("the large answer really is gzip-compressed, and both servers' answers decode alike", async () => {
    const a = await rawCall(fast.url, "/formstate.v1.ModelService/ListModels", { authorization: `Bearer ${tokens.get(fast)}`, "grpc-accept-encoding": "gzip" }, frame(ListModelsRequestSchema, { pageSize: 50 }));
    expect(a.headers["grpc-encoding"]).toBe("gzip");
    expect(a.body[0]).toBe(1);
    expect(gunzipSync(a.body.subarray(5)).length).toBeGreaterThan(1024);
  });

  it("compressed requests, the Connect protocol and gRPC-Web are left to Connect", async () => {
    const before = grpcFastPathServed();
    const token = tokens.get(fast)!;
    await createClient(AccountService, createGrpcTransport({ baseUrl: fast.url, interceptors: bearer(token), sendCompression: (await import("@connectrpc/connect-node")).compressionGzip, compressMinBytes: 1 })).getAccount({ name: "accounts/same" });
    await createClient(AccountService, createConnectTransport({ baseUrl: fast.url, httpVersion: "2", interceptors: bearer(token) })).getAccount({ name: "accounts/same" });
    await createClient(AccountService, fast.connect(token)).getAccount({ name: "accounts/same" });
    expect(grpcFastPathServed()).toBe(before);
    await createClient(AccountService, fast.grpc(token)).getAccount({ name: "accounts/same" });
    expect(grpcFastPathServed()).toBe(before + 1);
  });
});

describe("deadlines on the fast path", () => {
  // A unary method that waits for ctx.signal, as a handler that passes it downstream would.
  const registry = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: "fastpath/v1/wait.proto",
      package: "fastpath.v1",
      syntax: "proto3",
      messageType: [{ name: "Empty" }],
      service: [{ name: "WaitService", method: [{ name: "Wait", inputType: ".fastpath.v1.Empty", outputType: ".fastpath.v1.Empty" }] }],
    }),
    () => undefined,
  );
  const WaitService = registry.getService("fastpath.v1.WaitService") as DescService;
  const Empty = registry.getMessage("fastpath.v1.Empty") as DescMessage;
  const impl = {
    wait: async (_req: unknown, ctx: { signal: AbortSignal; timeoutMs(): number | undefined }) => {
      if (ctx.timeoutMs() === undefined) return {};
      await new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
      return {};
    },
  };

  for (const useFast of [true, false]) {
    it(`grpc-timeout aborts ctx.signal with DEADLINE_EXCEEDED (${useFast ? "fast path" : "Connect"})`, async () => {
      const routes: UnaryRoutes = new Map();
      const connect = connectNodeAdapter({ routes: (router) => void recordUnaryRoutes(router, routes).service(WaitService, impl as never) });
      const fastPath = createGrpcFastPath({ routes, interceptors: [] });
      const listener = await listen((req, res) => (useFast && fastPath(req, res)) || connect(req as never, res as never), { host: "127.0.0.1", port: 0 });
      try {
        const before = grpcFastPathServed();
        const t0 = Date.now();
        const r = await rawCall(listener.url, "/fastpath.v1.WaitService/Wait", { "grpc-timeout": "100m" }, frame(Empty, {}));
        expect(r.trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
        expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
        const ok = await rawCall(listener.url, "/fastpath.v1.WaitService/Wait", {}, frame(Empty, {}));
        expect(ok.trailers["grpc-status"]).toBe("0");
        expect(grpcFastPathServed() - before).toBe(useFast ? 2 : 0);
        // A client deadline through Connect's own client, too.
        const client = createClient(WaitService, createGrpcTransport({ baseUrl: listener.url }));
        await expect((client as unknown as { wait(r: object, o: object): Promise<unknown> }).wait({}, { timeoutMs: 50 })).rejects.toSatisfy((e: unknown) => ConnectError.from(e).code === Code.DeadlineExceeded);
      } finally {
        await listener.close(100);
      }
    });
  }
});
