/**
 * Role, plan and key caches across instances sharing one PostgreSQL schema
 * and one Redis: a member demoted or removed through instance A is refused
 * by B on the very next call, a plan change reaches B's plan cache, and an
 * instance that cannot reach Redis (never could, or lost it when a proxy in
 * between stopped) answers UNAVAILABLE (SHARED_STATE_UNAVAILABLE) to a key
 * revoke, rotate or update and to a member role change, and changes nothing:
 * a change other instances cannot hear of is never acknowledged as done.
 * All instances run on one frozen clock, so no cache expires on its own.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { type Server, type Socket, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService, ApiKeyStatus } from "../../gen/formstate/v1/api_key_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ManualClock } from "../../src/clock.js";
import { expectCode } from "../support/expect-error.js";
import { dropPostgresSchema } from "../support/postgres.js";
import { type TestServer, startTestServer } from "../support/test-server.js";
import { PG_URL, REDIS_URL, missingParts } from "./cluster.js";

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  it("needs PostgreSQL and Redis under CI", () => {
    throw new Error(`missing: ${missing}`);
  });
} else if (missing) {
  console.warn(`skipping the cache coherence tests: missing ${missing}`);
}

const reasonOf = (err: ConnectError) => err.findDetails(ErrorInfoSchema)[0]?.reason;
const redisHost = new URL(REDIS_URL);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A TCP proxy to the real Redis that can be stopped: the instance behind it loses Redis mid-run. */
async function redisProxy(): Promise<{ port: number; stop(): void }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((down) => {
    const up = connect(Number(redisHost.port || 6379), redisHost.hostname);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    down.pipe(up).pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    stop() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe.skipIf(Boolean(missing))("caches across instances on PostgreSQL and Redis", () => {
  const clock = new ManualClock(Date.now());
  const dataDir = mkdtempSync(join(tmpdir(), "formstate-coherence-"));
  const schema = `coh_${randomBytes(4).toString("hex")}`;
  let a: TestServer;
  let b: TestServer;
  /** Redis at a port where nothing listens. */
  let c: TestServer;
  /** Redis through a proxy that is stopped in a test. */
  let d: TestServer;
  let proxy: Awaited<ReturnType<typeof redisProxy>>;

  beforeAll(async () => {
    const u = new URL(PG_URL);
    u.searchParams.set("schema", schema);
    const prefix = `test:coh:${randomBytes(4).toString("hex")}:`;
    const env = { FORMSTATE_DATA_DIR: dataDir, DATABASE_URL: u.toString(), FORMSTATE_DB_POOL_SIZE: "3", REDIS_URL, FORMSTATE_REDIS_PREFIX: prefix };
    a = await startTestServer(env, { clock });
    b = await startTestServer(env, { clock });
    c = await startTestServer({ ...env, REDIS_URL: `redis://127.0.0.1:${await freePort()}` }, { clock });
    proxy = await redisProxy();
    d = await startTestServer({ ...env, REDIS_URL: `redis://127.0.0.1:${proxy.port}` }, { clock });
    const admin = await a.token({ projectId: "coh", role: "admin", subject: "coh-admin" });
    await createClient(AccountService, a.grpc(admin)).createAccount({ account: {} });
  }, 90_000);
  afterAll(async () => {
    proxy?.stop();
    for (const s of [d, c, b, a]) await s?.close().catch(() => {});
    await dropPostgresSchema(schema, PG_URL).catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** `role: null` signs a token without a role claim: the role then comes from the members table. */
  const accountsOn = async (ts: TestServer, subject = "coh-admin", role: "admin" | null = "admin") =>
    createClient(AccountService, ts.grpc(await ts.app.devIssuer!.sign({ projectId: "coh", subject, role: role ?? undefined })));
  const keysOn = async (ts: TestServer) => createClient(ApiKeyService, ts.grpc(await ts.token({ projectId: "coh", role: "admin", subject: "coh-admin" })));
  const keyOn = (ts: TestServer, secret: string) =>
    createClient(AccountService, createGrpcTransport({ baseUrl: ts.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", secret), next(req))] }));
  const rename = (client: Awaited<ReturnType<typeof accountsOn>>) =>
    client.updateAccount({ account: { name: "accounts/coh", displayName: "x" }, updateMask: { paths: ["display_name"] } });

  it("a member demoted, then removed, through A is refused by B on the very next call", async () => {
    const adminOnA = await accountsOn(a);
    await adminOnA.addMember({ parent: "accounts/coh", member: { userId: "mia", role: Role.ADMIN } });
    // mia's token has no role claim: her role comes from the members table, cached on B.
    const miaOnB = await accountsOn(b, "mia", null);
    await rename(miaOnB);
    await adminOnA.updateMember({ member: { name: "accounts/coh/members/mia", role: Role.USER }, updateMask: { paths: ["role"] } });
    await expectCode(rename(miaOnB), Code.PermissionDenied, /needs role admin/);
    await miaOnB.getAccount({ name: "accounts/coh" });

    await adminOnA.removeMember({ name: "accounts/coh/members/mia" });
    const members = await b.app.accounts.memberRole("coh", "mia");
    expect(members).toBeUndefined();
  });

  it("a plan change through A reaches B's plan cache", async () => {
    expect((await b.app.accounts.planOf("coh")).id).toBe("free");
    await a.app.database.db.updateTable("account").set({ plan_tier: "pro" }).where("project_id", "=", "coh").execute();
    a.app.accounts.invalidatePlan("coh");
    await expect.poll(async () => (await b.app.accounts.planOf("coh")).id, { timeout: 5_000, interval: 50 }).toBe("pro");
    await a.app.database.db.updateTable("account").set({ plan_tier: "free" }).where("project_id", "=", "coh").execute();
    a.app.accounts.invalidatePlan("coh");
    await expect.poll(async () => (await b.app.accounts.planOf("coh")).id, { timeout: 5_000, interval: 50 }).toBe("free");
  });

  it("an instance without Redis refuses revoke, rotate, update and role changes with UNAVAILABLE, and changes nothing", async () => {
    expect(c.app.sharedState?.status()).toBe("degraded");
    const keysA = await keysOn(a);
    const created = await keysA.createApiKey({ parent: "accounts/coh", apiKey: { displayName: "k", scopes: [Scope.READ] } });
    const name = created.apiKey!.name;
    await keyOn(b, created.secret).getAccount({ name: "accounts/coh" }); // cached on B for its 30 s

    const keysC = await keysOn(c);
    for (const call of [
      () => keysC.revokeApiKey({ name, reason: "leaked" }),
      () => keysC.rotateApiKey({ name, gracePeriod: durationFromMs(0) }),
      () => keysC.updateApiKey({ apiKey: { name, displayName: "renamed" }, updateMask: { paths: ["display_name"] } }),
    ]) {
      const err = await expectCode(call(), Code.Unavailable, /Redis/);
      expect(reasonOf(err)).toBe("SHARED_STATE_UNAVAILABLE");
    }
    const after = (await keysA.getApiKey({ name })).apiKey!;
    expect([after.status, after.displayName]).toEqual([ApiKeyStatus.ACTIVE, "k"]);

    await (await accountsOn(a)).addMember({ parent: "accounts/coh", member: { userId: "noa", role: Role.DEVELOPER } });
    const err = await expectCode(
      (await accountsOn(c)).updateMember({ member: { name: "accounts/coh/members/noa", role: Role.USER }, updateMask: { paths: ["role"] } }),
      Code.Unavailable,
    );
    expect(reasonOf(err)).toBe("SHARED_STATE_UNAVAILABLE");
    expect(await a.app.accounts.memberRole("coh", "noa")).toBe("developer");

    // Through a healthy instance the revoke is done and heard everywhere at once.
    await keysA.revokeApiKey({ name, reason: "leaked" });
    await expectCode(keyOn(b, created.secret).getAccount({ name: "accounts/coh" }), Code.Unauthenticated, /revoked/);
  });

  it("an instance that loses Redis mid-run (its proxy stops) refuses a revoke with UNAVAILABLE", async () => {
    expect(d.app.sharedState?.status()).toBe("connected");
    const keysA = await keysOn(a);
    const created = await keysA.createApiKey({ parent: "accounts/coh", apiKey: { displayName: "p", scopes: [Scope.READ] } });
    proxy.stop();
    await expect.poll(() => d.app.sharedState?.status(), { timeout: 15_000, interval: 100 }).toBe("degraded");
    const err = await expectCode((await keysOn(d)).revokeApiKey({ name: created.apiKey!.name }), Code.Unavailable);
    expect(reasonOf(err)).toBe("SHARED_STATE_UNAVAILABLE");
    expect((await keysA.getApiKey({ name: created.apiKey!.name })).apiKey?.status).toBe(ApiKeyStatus.ACTIVE);
  });
});
