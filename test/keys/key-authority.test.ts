/**
 * Key authority over real clients against a real server: each finding of
 * issue 14 about keys, reproduced. A caller never manages a key above its own
 * authority; a scoped key is never more than its parent (and its own current
 * state) on any field; overrides only lower the plan; environment is part of
 * a key's identity for VerifyApiKey as for authentication.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService, ApiKeyStatus, VerifyResult } from "../../gen/formstate/v1/api_key_service_pb.js";
import { ErrorInfoSchema } from "../../gen/formstate/v1/errors_pb.js";
import { ManualClock } from "../../src/clock.js";
import { formatKey, parseKey } from "../../src/keys/key-format.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let ts: TestServer;
const clock = new ManualClock(Date.now());
const GET_ACCOUNT = "/formstate.v1.AccountService/GetAccount";
const REVOKE = "/formstate.v1.ApiKeyService/RevokeApiKey";

function withKey(key: string) {
  return createGrpcTransport({ baseUrl: ts.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", key), next(req))] });
}
const keysAs = async (projectId: string, role: "admin" | "developer" | "user") => ts.client(ApiKeyService, ts.grpc(await ts.token({ projectId, role })));
const ts_ = (ms: number) => ({ seconds: BigInt(Math.floor(ms / 1000)), nanos: 0 });
const reasonOf = (err: ConnectError) => err.findDetails(ErrorInfoSchema)[0]?.reason;

async function newAccount(projectId: string) {
  const token = await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` });
  await createClient(AccountService, ts.grpc(token)).createAccount({ account: { displayName: projectId } });
  return createClient(ApiKeyService, ts.grpc(token));
}

beforeAll(async () => {
  ts = await startTestServer({}, { clock });
});
afterAll(async () => {
  await ts?.close();
});

describe("a developer cannot manage an admin's admin-scope key", () => {
  it("rotate, update and revoke answer PERMISSION_DENIED (KEY_ABOVE_CALLER); the key is untouched and no admin secret is issued", async () => {
    const admin = await newAccount("rank");
    const adminKey = await admin.createApiKey({ parent: "accounts/rank", apiKey: { displayName: "ops", scopes: [Scope.ADMIN] } });
    const name = adminKey.apiKey!.name;
    const dev = await keysAs("rank", "developer");

    const rot = await expectCode(dev.rotateApiKey({ name, gracePeriod: durationFromMs(60_000) }), Code.PermissionDenied);
    expect(reasonOf(rot)).toBe("KEY_ABOVE_CALLER");
    const upd = await expectCode(dev.updateApiKey({ apiKey: { name, displayName: "mine" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied);
    expect(reasonOf(upd)).toBe("KEY_ABOVE_CALLER");
    const rev = await expectCode(dev.revokeApiKey({ name, reason: "nope" }), Code.PermissionDenied);
    expect(reasonOf(rev)).toBe("KEY_ABOVE_CALLER");

    const after = (await admin.getApiKey({ name })).apiKey!;
    expect([after.status, after.displayName]).toEqual([ApiKeyStatus.ACTIVE, "ops"]);
    // The admin key still works; the developer's own write keys remain theirs to manage.
    await createClient(AccountService, withKey(adminKey.secret)).getAccount({ name: "accounts/rank" });
    const writeKey = await dev.createApiKey({ parent: "accounts/rank", apiKey: { scopes: [Scope.WRITE] } });
    const rotated = await dev.rotateApiKey({ name: writeKey.apiKey!.name, gracePeriod: durationFromMs(0) });
    expect(rotated.apiKey?.scopes).toEqual([Scope.WRITE]);
  });

  it("a write-scope key (developer rank) cannot manage an admin-scope key either, whoever created it", async () => {
    const admin = await newAccount("rank-key");
    const adminKey = await admin.createApiKey({ parent: "accounts/rank-key", apiKey: { scopes: [Scope.ADMIN] } });
    // An admin-scope key is the only key allowed on these methods; it may manage itself and lower keys.
    const asAdminKey = createClient(ApiKeyService, withKey(adminKey.secret));
    const low = await admin.createApiKey({ parent: "accounts/rank-key", apiKey: { scopes: [Scope.READ] } });
    await asAdminKey.updateApiKey({ apiKey: { name: low.apiKey!.name, displayName: "by key" }, updateMask: { paths: ["display_name"] } });
  });
});

describe("UpdateApiKey never widens a scoped key", () => {
  it("past its parent or its own current state: scopes, expiry, models, spend cap", async () => {
    const admin = await newAccount("widen");
    const parent = await admin.createApiKey({
      parent: "accounts/widen",
      apiKey: {
        scopes: [Scope.READ, Scope.WRITE],
        allowedModels: ["openai/*"],
        spendCapMicros: 5_000_000n,
        expireTime: ts_(clock.now() + 3_600_000),
        rateLimit: { requestsPerSecond: 2, burst: 4 },
      },
    });
    const child = await admin.createScopedKey({
      parent: "accounts/widen",
      parentKey: parent.apiKey!.name,
      ttl: durationFromMs(60_000),
      spendCapMicros: 1_000_000n,
      allowedMethods: [GET_ACCOUNT],
      allowedModels: ["openai/gpt-4o*"],
    });
    const name = child.apiKey!.name;
    const widen = (paths: string[], apiKey: Record<string, unknown>) => admin.updateApiKey({ apiKey: { name, ...apiKey }, updateMask: { paths } });

    await expectCode(widen(["scopes"], { scopes: [Scope.READ, Scope.WRITE, Scope.ADMIN] }), Code.InvalidArgument, /scopes/);
    await expectCode(widen(["expire_time"], {}), Code.InvalidArgument, /expire_time/); // cleared: never expires
    await expectCode(widen(["expire_time"], { expireTime: ts_(clock.now() + 2 * 365 * 86_400_000) }), Code.InvalidArgument, /expire_time/);
    await expectCode(widen(["expire_time"], { expireTime: ts_(clock.now() + 30 * 60_000) }), Code.InvalidArgument, /expire_time/); // before the parent, past its own
    await expectCode(widen(["allowed_models"], { allowedModels: ["anthropic/*"] }), Code.InvalidArgument, /allowed_models/);
    await expectCode(widen(["allowed_models"], { allowedModels: [] }), Code.InvalidArgument, /allowed_models/); // empty = every model
    await expectCode(widen(["allowed_models"], { allowedModels: ["openai/*"] }), Code.InvalidArgument, /allowed_models/); // the parent's, wider than its own
    await expectCode(widen(["spend_cap_micros"], { spendCapMicros: 10_000_000n }), Code.InvalidArgument, /spend_cap_micros/);
    await expectCode(widen(["spend_cap_micros"], {}), Code.InvalidArgument, /spend_cap_micros/); // cleared: uncapped
    await expectCode(widen(["rate_limit"], { rateLimit: { requestsPerSecond: 2, burst: 5 } }), Code.InvalidArgument, /rate_limit: a burst of 5/);
    await expectCode(widen(["rate_limit"], {}), Code.InvalidArgument, /rate_limit/); // cleared: the plan's, above the parent's

    const before = (await admin.getApiKey({ name })).apiKey!;
    expect(before.expireTime).toEqual(child.expireTime);
    expect(before.spendCapMicros).toBe(1_000_000n);
    expect(before.allowedModels).toEqual(["openai/gpt-4o*"]);

    // Narrowing is fine.
    const narrowed = await widen(["spend_cap_micros", "expire_time", "allowed_models"], {
      spendCapMicros: 500_000n,
      expireTime: ts_(clock.now() + 30_000),
      allowedModels: ["openai/gpt-4o-mini"],
    });
    expect(narrowed.apiKey?.spendCapMicros).toBe(500_000n);
    expect(narrowed.apiKey?.allowedModels).toEqual(["openai/gpt-4o-mini"]);
  });

  it("a parentless scoped key (minted by a user) stays within its 24 h TTL", async () => {
    const admin = await newAccount("ttl");
    const child = await admin.createScopedKey({ parent: "accounts/ttl", ttl: durationFromMs(3_600_000), spendCapMicros: 1_000n, allowedMethods: [GET_ACCOUNT] });
    const name = child.apiKey!.name;
    await expectCode(
      admin.updateApiKey({ apiKey: { name, expireTime: ts_(clock.now() + 25 * 3_600_000) }, updateMask: { paths: ["expire_time"] } }),
      Code.InvalidArgument,
      /expire_time/,
    );
    await expectCode(admin.updateApiKey({ apiKey: { name }, updateMask: { paths: ["expire_time"] } }), Code.InvalidArgument, /expire_time/);
  });
});

describe("a scoped key is never more than its parent at any moment", () => {
  it("it dies when its rotated parent's grace period ends", async () => {
    const admin = await newAccount("grace");
    const parent = await admin.createApiKey({ parent: "accounts/grace", apiKey: { scopes: [Scope.READ, Scope.WRITE] } });
    const child = await admin.createScopedKey({ parent: "accounts/grace", parentKey: parent.apiKey!.name, ttl: durationFromMs(3_600_000), spendCapMicros: 1_000n, allowedMethods: [GET_ACCOUNT] });
    const asChild = createClient(AccountService, withKey(child.secret));
    await asChild.getAccount({ name: "accounts/grace" });
    await admin.rotateApiKey({ name: parent.apiKey!.name, gracePeriod: durationFromMs(10_000) });
    await asChild.getAccount({ name: "accounts/grace" }); // within the grace
    clock.advance(10_001);
    await expectCode(asChild.getAccount({ name: "accounts/grace" }), Code.Unauthenticated, /expired/);
    const verdict = await admin.verifyApiKey({ key: child.secret });
    expect([verdict.valid, VerifyResult[verdict.result]]).toEqual([false, "EXPIRED"]);
  });

  it("its scopes shrink with its parent's", async () => {
    const admin = await newAccount("shrink");
    const parent = await admin.createApiKey({ parent: "accounts/shrink", apiKey: { scopes: [Scope.READ, Scope.WRITE] } });
    const child = await admin.createScopedKey({ parent: "accounts/shrink", parentKey: parent.apiKey!.name, ttl: durationFromMs(3_600_000), spendCapMicros: 1_000n, allowedMethods: [GET_ACCOUNT] });
    await createClient(AccountService, withKey(child.secret)).getAccount({ name: "accounts/shrink" });
    await admin.updateApiKey({ apiKey: { name: parent.apiKey!.name, scopes: [Scope.READ] }, updateMask: { paths: ["scopes"] } });
    const verdict = await admin.verifyApiKey({ key: child.secret });
    expect(verdict.scopes).toEqual([Scope.READ]);
    expect((await admin.getApiKey({ name: child.apiKey!.name })).apiKey?.scopes).toEqual([Scope.READ]);
  });

  it("a scoped key allowed RevokeApiKey may revoke itself, never another key", async () => {
    const admin = await newAccount("self");
    const parent = await admin.createApiKey({ parent: "accounts/self", apiKey: { scopes: [Scope.ADMIN] } });
    const victim = await admin.createApiKey({ parent: "accounts/self", apiKey: { scopes: [Scope.READ] } });
    const child = await admin.createScopedKey({ parent: "accounts/self", parentKey: parent.apiKey!.name, ttl: durationFromMs(3_600_000), spendCapMicros: 1_000n, allowedMethods: [REVOKE] });
    const asChild = createClient(ApiKeyService, withKey(child.secret));
    const err = await expectCode(asChild.revokeApiKey({ name: victim.apiKey!.name }), Code.PermissionDenied);
    expect(reasonOf(err)).toBe("SCOPED_KEY_CALLER");
    await expectCode(asChild.revokeApiKey({ name: parent.apiKey!.name }), Code.PermissionDenied);
    expect((await admin.getApiKey({ name: victim.apiKey!.name })).apiKey?.status).toBe(ApiKeyStatus.ACTIVE);
    expect((await admin.getApiKey({ name: parent.apiKey!.name })).apiKey?.status).toBe(ApiKeyStatus.ACTIVE);
    await asChild.revokeApiKey({ name: child.apiKey!.name, reason: "done" });
    expect((await admin.getApiKey({ name: child.apiKey!.name })).apiKey?.status).toBe(ApiKeyStatus.REVOKED);
  });
});

describe("rate-limit overrides only lower the plan", () => {
  it("a burst above the plan's is refused in Create and Update (Free: 10/s, burst 20)", async () => {
    const admin = await newAccount("burst");
    await expectCode(
      admin.createApiKey({ parent: "accounts/burst", apiKey: { scopes: [Scope.READ], rateLimit: { requestsPerSecond: 1, burst: 10_000 } } }),
      Code.InvalidArgument,
      /burst/,
    );
    const ok = await admin.createApiKey({ parent: "accounts/burst", apiKey: { scopes: [Scope.READ], rateLimit: { requestsPerSecond: 10, burst: 20 } } });
    await expectCode(
      admin.updateApiKey({ apiKey: { name: ok.apiKey!.name, rateLimit: { requestsPerSecond: 2, burst: 21 } }, updateMask: { paths: ["rate_limit"] } }),
      Code.InvalidArgument,
      /burst/,
    );
    expect((await admin.getApiKey({ name: ok.apiKey!.name })).apiKey?.rateLimit).toMatchObject({ requestsPerSecond: 10, burst: 20 });
  });
});

describe("environment is part of a key's identity", () => {
  it("VerifyApiKey does not say VALID for a live key presented with the fs_test_ prefix (authentication refuses it)", async () => {
    const admin = await newAccount("env");
    const live = await admin.createApiKey({ parent: "accounts/env", apiKey: { scopes: [Scope.READ] } });
    const p = parseKey(live.secret)!;
    const swapped = formatKey("test", p.keyId, p.secret);
    expect(parseKey(swapped)?.environment).toBe("test"); // well-formed, checksum right
    await expectCode(createClient(AccountService, withKey(swapped)).getAccount({ name: "accounts/env" }), Code.Unauthenticated);
    const verdict = await admin.verifyApiKey({ key: swapped });
    expect([verdict.valid, VerifyResult[verdict.result], verdict.projectId]).toEqual([false, "UNKNOWN", ""]);
    expect((await admin.verifyApiKey({ key: live.secret })).valid).toBe(true);
  });
});
