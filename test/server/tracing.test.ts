/**
 * OpenTelemetry tracing: one SERVER span per call, a child of the caller's
 * `traceparent`, on the gRPC fast path and over Connect; exported over
 * OTLP/HTTP to a collector when an endpoint is configured; off otherwise.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { loadConfig } from "../../src/config.js";
import { tracingWith } from "../../src/server/tracing.js";
import { bearer, startTestServer, type TestServer } from "../support/test-server.js";

const PROJECT = "traced";

const withTraceparent =
  (traceparent: string): Interceptor =>
  (next) =>
  (req) => {
    req.header.set("traceparent", traceparent);
    return next(req);
  };

const newTraceparent = () => {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, header: `00-${traceId}-${spanId}-01` };
};

describe("tracing with an in-process exporter", () => {
  const exporter = new InMemorySpanExporter();
  let ts: TestServer;
  let token: string;

  beforeAll(async () => {
    ts = await startTestServer({}, { tracing: tracingWith([new SimpleSpanProcessor(exporter)]) });
    token = await ts.token({ projectId: PROJECT, role: "admin" });
    await ts.client(AccountService, ts.connect(token)).createAccount({ account: { displayName: "Traced" } });
  });
  afterAll(async () => ts?.close());

  const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);

  for (const protocol of ["grpc", "connect"] as const) {
    it(`makes one server span per ${protocol} call, a child of the caller's traceparent`, async () => {
      const tp = newTraceparent();
      const interceptors = [...bearer(token), withTraceparent(tp.header)];
      const transport = protocol === "grpc" ? createGrpcTransport({ baseUrl: ts.url, interceptors }) : createConnectTransport({ baseUrl: ts.url, httpVersion: "1.1", interceptors });
      await createClient(AccountService, transport).getAccount({ name: `accounts/${PROJECT}` });
      const spans = spansOf(tp.traceId);
      expect(spans).toHaveLength(1);
      const [span] = spans;
      expect(span.name).toBe("formstate.v1.AccountService/GetAccount");
      expect(span.kind).toBe(1); // SpanKind.SERVER
      expect(span.parentSpanContext?.spanId).toBe(tp.spanId);
      expect(span.attributes).toMatchObject({
        "rpc.system": protocol === "grpc" ? "grpc" : "connect_rpc",
        "rpc.service": "formstate.v1.AccountService",
        "rpc.method": "GetAccount",
        "rpc.grpc.status_code": 0,
      });
    });
  }

  it("records a refused call's code, and starts a new trace when the caller sends none", async () => {
    const tp = newTraceparent();
    const transport = createConnectTransport({ baseUrl: ts.url, httpVersion: "1.1", interceptors: [...bearer(token), withTraceparent(tp.header)] });
    const err = await createClient(AccountService, transport)
      .getAccount({ name: "accounts/someone-else" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    const [span] = spansOf(tp.traceId);
    expect(span.attributes["rpc.grpc.status_code"]).toBe((err as ConnectError).code);
    expect((err as ConnectError).code).toBe(Code.NotFound);

    const before = new Set(exporter.getFinishedSpans().map((s) => s.spanContext().spanId));
    await ts.client(AccountService, ts.connect(token)).getAccount({ name: `accounts/${PROJECT}` });
    const fresh = exporter.getFinishedSpans().filter((s) => !before.has(s.spanContext().spanId));
    expect(fresh).toHaveLength(1);
    expect(fresh[0].parentSpanContext).toBeUndefined();
  });
});

describe("tracing configuration", () => {
  it("is off unless an OTLP endpoint is configured, and follows the OpenTelemetry variables", async () => {
    expect(loadConfig({}).otlpTracesUrl).toBeUndefined();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }).otlpTracesUrl).toBe("http://collector:4318/v1/traces");
    expect(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c/traces" }).otlpTracesUrl).toBe("http://c/traces");
    expect(loadConfig({ FORMSTATE_OTLP_ENDPOINT: "http://f/v1/traces", OTEL_EXPORTER_OTLP_ENDPOINT: "http://o" }).otlpTracesUrl).toBe("http://f/v1/traces");
    const ts = await startTestServer();
    try {
      expect(ts.app.tracing).toBeUndefined();
    } finally {
      await ts.close();
    }
  });

  describe("to an OTLP/HTTP collector", () => {
    let collector: Server;
    const bodies: { path: string; body: string }[] = [];
    beforeAll(async () => {
      collector = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          bodies.push({ path: req.url ?? "", body: Buffer.concat(chunks).toString("utf8") });
          res.writeHead(200, { "content-type": "application/json" }).end("{}");
        });
      });
      await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
    });
    afterAll(() => new Promise<void>((r) => collector.close(() => r())));

    it("exports each call's span, flushed at shutdown", async () => {
      const port = (collector.address() as AddressInfo).port;
      const ts = await startTestServer({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` });
      const tp = newTraceparent();
      try {
        expect(ts.app.tracing).toBeDefined();
        const token = await ts.token({ projectId: PROJECT, role: "admin" });
        const transport = createGrpcTransport({ baseUrl: ts.url, interceptors: [...bearer(token), withTraceparent(tp.header)] });
        await createClient(AccountService, transport).createAccount({ account: { displayName: "Exported" } });
      } finally {
        await ts.close(); // shutdown flushes the batch
      }
      const exported = bodies.filter((b) => b.path === "/v1/traces").map((b) => b.body).join("\n");
      expect(exported).toContain("formstate.v1.AccountService/CreateAccount");
      expect(exported).toContain(tp.traceId);
    });
  });
});
