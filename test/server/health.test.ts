/**
 * grpc.health.v1 on a real HTTP/2 server: Check and Watch from Connect's gRPC
 * transport and from @grpc/grpc-js, status changes reaching watchers,
 * SERVICE_UNKNOWN for unknown services, shutdown ending streams, and no
 * listener left behind after a cancel.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { HealthStatus, registerHealth } from "../../src/server/health.js";

const root = join(import.meta.dirname, "../..");
const ACCOUNTS = "formstate.v1.AccountService";

let health: HealthStatus;
let server: http2.Http2Server;
let sessions: Set<http2.ServerHttp2Session>;
let baseUrl: string;

beforeEach(async () => {
  health = new HealthStatus([ACCOUNTS]);
  server = http2.createServer(connectNodeAdapter({ routes: (router) => registerHealth(router, health) }));
  sessions = new Set();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  for (const s of sessions) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

function connectClient() {
  return createClient(Health, createGrpcTransport({ baseUrl }));
}

/** Polls until `check` holds; watchers unsubscribe asynchronously after a cancel reaches the server. */
async function eventually(check: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("HealthStatus", () => {
  it("sends the current status, then only changes, and ends on abort", async () => {
    health.set("", Status.SERVING);
    const abort = new AbortController();
    const it = health.watch("", abort.signal);
    expect((await it.next()).value).toBe(Status.SERVING);
    const next = it.next();
    health.set("", Status.SERVING); // unchanged: not sent again
    health.set("", Status.NOT_SERVING);
    expect((await next).value).toBe(Status.NOT_SERVING);
    expect(health.watchers()).toBe(1);
    // A waiting stream is released by the abort, not left parked.
    const parked = it.next();
    abort.abort();
    expect(await parked).toEqual({ done: true, value: undefined });
    expect(health.watchers()).toBe(0);
  });

  it("takes many watchers without a MaxListenersExceededWarning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    // One signal per watcher, as each call has its own.
    const aborts = Array.from({ length: 25 }, () => new AbortController());
    const streams = aborts.map((a) => health.watch("", a.signal));
    await Promise.all(streams.map((s) => s.next()));
    expect(health.watchers()).toBe(25);
    for (const a of aborts) a.abort();
    await Promise.all(streams.map((s) => s.next()));
    await new Promise((r) => setImmediate(r));
    process.off("warning", onWarning);
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
    expect(health.watchers()).toBe(0);
  });
});

describe("Check over Connect's gRPC transport", () => {
  it("returns the server's and a service's status", async () => {
    const client = connectClient();
    expect((await client.check({ service: "" })).status).toBe(Status.NOT_SERVING);
    health.setAll(true);
    expect((await client.check({ service: "" })).status).toBe(Status.SERVING);
    health.set(ACCOUNTS, Status.NOT_SERVING);
    expect((await client.check({ service: ACCOUNTS })).status).toBe(Status.NOT_SERVING);
  });

  it("fails NOT_FOUND for an unknown service", async () => {
    const err = await connectClient().check({ service: "no.such.Service" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });

  it("List returns every known status", async () => {
    health.set(ACCOUNTS, Status.SERVING);
    const res = await connectClient().list({});
    expect(Object.fromEntries(Object.entries(res.statuses).map(([k, v]) => [k, v.status]))).toEqual({
      "": Status.NOT_SERVING,
      [ACCOUNTS]: Status.SERVING,
    });
  });
});

describe("Watch over Connect's gRPC transport", () => {
  it("streams the current status and each change, and a cancel removes the server-side listener", async () => {
    health.setAll(true);
    const abort = new AbortController();
    const stream = connectClient().watch({ service: ACCOUNTS }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(Status.SERVING);
    expect(health.watchers()).toBe(1);
    health.set(ACCOUNTS, Status.NOT_SERVING);
    expect((await stream.next()).value?.status).toBe(Status.NOT_SERVING);
    health.set("", Status.NOT_SERVING); // another service: not sent on this stream
    health.set(ACCOUNTS, Status.SERVING);
    expect((await stream.next()).value?.status).toBe(Status.SERVING);

    abort.abort();
    await expect(stream.next()).rejects.toMatchObject({ code: Code.Canceled });
    await eventually(() => health.watchers() === 0, "the watcher to unsubscribe");
  });

  it("sends SERVICE_UNKNOWN for an unknown service and keeps watching until it becomes known", async () => {
    const abort = new AbortController();
    const stream = connectClient().watch({ service: "later.Service" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(Status.SERVICE_UNKNOWN);
    await eventually(() => health.watchers() === 1, "the watcher to subscribe");
    health.set("later.Service", Status.SERVING);
    expect((await stream.next()).value?.status).toBe(Status.SERVING);
    abort.abort();
    await eventually(() => health.watchers() === 0, "the watcher to unsubscribe");
  });

  it("ends cleanly, after NOT_SERVING, on shutdown", async () => {
    health.setAll(true);
    const seen: Status[] = [];
    const done = (async () => {
      for await (const res of connectClient().watch({ service: "" })) {
        seen.push(res.status);
        if (seen.length === 1) health.shutdown();
      }
    })();
    await done; // resolves: the stream ended with status OK, not an error
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
    expect(health.watchers()).toBe(0);
  });
});

describe("@grpc/grpc-js with the health.proto from third_party", () => {
  function grpcJsClient() {
    const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [join(root, "third_party")], enums: String });
    // biome-ignore lint/suspicious/noExplicitAny: proto-loader packages are untyped
    const pkg = grpc.loadPackageDefinition(def) as any;
    return new pkg.grpc.health.v1.Health(baseUrl.replace("http://", ""), grpc.credentials.createInsecure());
  }

  it("Check answers SERVING, and NOT_FOUND for an unknown service", async () => {
    health.setAll(true);
    const client = grpcJsClient();
    try {
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        client.check({ service: "" }, (err: Error | null, r: { status: string }) => (err ? reject(err) : resolve(r))),
      );
      expect(res.status).toBe("SERVING");
      const err = await new Promise<grpc.ServiceError>((resolve) => client.check({ service: "nope" }, (e: grpc.ServiceError) => resolve(e)));
      expect(err.code).toBe(grpc.status.NOT_FOUND);
    } finally {
      client.close();
    }
  });

  it("Watch sees a change, and a cancel drops the server-side listener to 0", async () => {
    health.setAll(true);
    const client = grpcJsClient();
    try {
      const call = client.watch({ service: ACCOUNTS });
      const received: string[] = [];
      const errors: grpc.ServiceError[] = [];
      call.on("data", (m: { status: string }) => received.push(m.status));
      call.on("error", (e: grpc.ServiceError) => errors.push(e));
      await eventually(() => received.length === 1, "the first status");
      expect(received).toEqual(["SERVING"]);
      expect(health.watchers()).toBe(1);
      health.set(ACCOUNTS, Status.NOT_SERVING);
      await eventually(() => received.length === 2, "the change");
      expect(received).toEqual(["SERVING", "NOT_SERVING"]);

      call.cancel();
      await eventually(() => health.watchers() === 0, "the watcher to unsubscribe");
      expect(errors.map((e) => e.code)).toEqual([grpc.status.CANCELLED]);
    } finally {
      client.close();
    }
  });
});
