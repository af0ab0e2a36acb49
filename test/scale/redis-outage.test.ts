/**
 * Two instances (one SQLite file between them) and a Redis of their own that
 * is down at start, comes up, dies and comes back: the instances start
 * degraded, connect by themselves, then share key revocations; they show
 * each change in /healthz.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const haveRedis = spawnSync("redis-server", ["--version"]).status === 0;
if (!haveRedis && process.env.CI === "true") {
  it("needs redis-server under CI", () => {
    throw new Error("redis-server is not installed (apt-get install redis-server)");
  });
} else if (!haveRedis) {
  console.warn("skipping the Redis outage test: redis-server is not installed (apt-get install redis-server)");
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe.skipIf(!haveRedis)("Redis down, up, down and up again", () => {
  let port: number;
  let redis: ChildProcess | undefined;
  let a: TestServer;
  let b: TestServer;
  const startRedis = () => {
    redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  };
  const health = async (ts: TestServer) => ((await (await fetch(`${ts.url}/healthz`)).json()) as { redis?: string }).redis;

  beforeAll(async () => {
    port = await freePort();
    const env = { REDIS_URL: `redis://127.0.0.1:${port}`, FORMSTATE_REDIS_PREFIX: "outage:" };
    a = await startTestServer(env);
    b = await startTestServer({ ...env, DATABASE_URL: join(a.dataDir, "formstate.db"), FORMSTATE_DATA_DIR: a.dataDir });
  }, 60_000);
  afterAll(async () => {
    redis?.kill("SIGKILL");
    await b?.close();
    await a?.close();
  });

  it("start degraded, connect when Redis comes up, then a revoke on one is seen by the other at once", async () => {
    expect([await health(a), await health(b)]).toEqual(["degraded", "degraded"]);
    startRedis();
    await expect.poll(async () => [await health(a), await health(b)], { timeout: 15_000, interval: 200 }).toEqual(["connected", "connected"]);

    const admin = await a.token({ projectId: "outage", role: "admin" });
    await createClient(AccountService, a.grpc(admin)).createAccount({ account: {} });
    const created = await createClient(ApiKeyService, a.grpc(admin)).createApiKey({ parent: "accounts/outage", apiKey: { scopes: [Scope.READ] } });
    const onB = createClient(AccountService, createGrpcTransport({ baseUrl: b.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", created.secret), next(req))] }));
    await onB.getAccount({ name: "accounts/outage" }); // cached on B
    await createClient(ApiKeyService, a.grpc(admin)).revokeApiKey({ name: created.apiKey!.name });
    const err = await onB.getAccount({ name: "accounts/outage" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.Unauthenticated);
    expect(err?.rawMessage).toMatch(/revoked/);
  });

  it("Redis dies: both say degraded and keep serving; it comes back: both connect again", async () => {
    redis!.kill("SIGKILL");
    await expect.poll(async () => [await health(a), await health(b)], { timeout: 15_000, interval: 200 }).toEqual(["degraded", "degraded"]);
    const admin = await b.token({ projectId: "outage", role: "admin" });
    expect((await createClient(AccountService, b.grpc(admin)).getAccount({ name: "accounts/outage" })).account?.name).toBe("accounts/outage");
    startRedis();
    await expect.poll(async () => [await health(a), await health(b)], { timeout: 15_000, interval: 200 }).toEqual(["connected", "connected"]);
  });
});
