/**
 * REDIS_URL set but Redis unreachable: the server starts and serves, limits
 * hold per instance (never unlimited), and the degraded mode shows in /healthz
 * and in the log.
 */
import { Writable } from "node:stream";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { DEGRADED_CACHE_TTL_MS } from "../../src/keys/api-keys.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let ts: TestServer;
const clock = new ManualClock(Date.now());
const lines: Array<{ level: number; msg: string }> = [];
const log = pino({ level: "info" }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]), done()) }));

beforeAll(async () => {
  // Port 1 on loopback: nothing listens, connections are refused at once.
  ts = await startTestServer({ REDIS_URL: "redis://127.0.0.1:1" }, { log, clock });
});
afterAll(async () => {
  await ts?.close();
});

describe("Redis unreachable", () => {
  it("starts degraded, says so in /healthz and the log, and still limits a key", async () => {
    const health = await (await fetch(`${ts.url}/healthz`)).json();
    expect(health).toEqual({ status: "DEGRADED", redis: "degraded" });

    const admin = await ts.token({ projectId: "fallback", role: "admin" });
    await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
    const { secret } = await createClient(ApiKeyService, ts.grpc(admin)).createApiKey({
      parent: "accounts/fallback",
      apiKey: { scopes: [Scope.READ], rateLimit: { requestsPerSecond: 1, burst: 3 } },
    });
    const asKey = createClient(AccountService, createGrpcTransport({ baseUrl: ts.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", secret), next(req))] }));
    for (let i = 0; i < 3; i++) await asKey.getAccount({ name: "accounts/fallback" });
    await expectCode(asKey.getAccount({ name: "accounts/fallback" }), Code.ResourceExhausted, /rate limit exceeded/);

    await expect.poll(() => lines.some((l) => l.level === 40 && /redis unreachable/.test(l.msg))).toBe(true);
  });

  it("trusts a cached key for a short time only, since other instances' revocations cannot reach it", async () => {
    const admin = await ts.token({ projectId: "fallback-cache", role: "admin" });
    await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
    const created = await createClient(ApiKeyService, ts.grpc(admin)).createApiKey({ parent: "accounts/fallback-cache", apiKey: { scopes: [Scope.READ] } });
    const asKey = createClient(AccountService, createGrpcTransport({ baseUrl: ts.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", created.secret), next(req))] }));
    await asKey.getAccount({ name: "accounts/fallback-cache" });
    // Revoked by "another instance": straight in the store, no invalidation reaches this one.
    const keyId = created.apiKey!.name.split("/").pop()!;
    await ts.app.database.db.updateTable("api_key").set({ status: "revoked", revoke_time: clock.now() }).where("key_id", "=", keyId).execute();
    clock.advance(DEGRADED_CACHE_TTL_MS - 500);
    await asKey.getAccount({ name: "accounts/fallback-cache" }); // still cached
    clock.advance(1_000);
    await expectCode(asKey.getAccount({ name: "accounts/fallback-cache" }), Code.Unauthenticated, /revoked/);
    expect(DEGRADED_CACHE_TTL_MS).toBeLessThanOrEqual(5_000);
  });
});
