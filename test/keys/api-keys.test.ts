/**
 * API keys over real clients against a real server: lifecycle and audit,
 * plan limits, scopes, project isolation, scoped keys, rate limits, and a
 * database with no secret in it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { toJsonString } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import Sqlite from "better-sqlite3";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import {
  ApiKeyEventType,
  ApiKeyKind,
  ApiKeyService,
  ApiKeyStatus,
  ListApiKeysResponseSchema,
  VerifyResult,
} from "../../gen/formstate/v1/api_key_service_pb.js";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import { LimitExceededSchema, LimitReason, RetryInfoSchema } from "../../gen/formstate/v1/errors_pb.js";
import { ManualClock } from "../../src/clock.js";
import { parseKey } from "../../src/keys/key-format.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let ts: TestServer;
const clock = new ManualClock(Date.now());
const secrets: string[] = [];

function withKey(key: string, header: "x-api-key" | "authorization" = "x-api-key") {
  return createGrpcTransport({
    baseUrl: ts.url,
    interceptors: [
      (next) => (req) => {
        req.header.set(header, header === "authorization" ? `Bearer ${key}` : key);
        return next(req);
      },
    ],
  });
}
const keysAs = async (projectId: string, role: "admin" | "developer" | "user", subject?: string) =>
  ts.client(ApiKeyService, ts.grpc(await ts.token({ projectId, role, subject })));

async function newAccount(projectId: string) {
  const token = await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` });
  await createClient(AccountService, ts.grpc(token)).createAccount({ account: { displayName: projectId } });
  return createClient(ApiKeyService, ts.grpc(token));
}

async function mint(admin: Awaited<ReturnType<typeof newAccount>>, projectId: string, extra: Record<string, unknown> = {}) {
  const res = await admin.createApiKey({ parent: `accounts/${projectId}`, apiKey: { displayName: "k", scopes: [Scope.READ, Scope.WRITE], ...extra } });
  secrets.push(res.secret);
  return res;
}

beforeAll(async () => {
  ts = await startTestServer({}, { clock });
});
afterAll(async () => {
  await ts?.close();
});

describe("key lifecycle over real clients", () => {
  it("create -> use -> list -> update -> rotate -> revoke, with audit events in order", async () => {
    const admin = await newAccount("life");
    const created = await admin.createApiKey({
      parent: "accounts/life",
      apiKey: { displayName: "ci", scopes: [Scope.READ, Scope.WRITE] },
      requestId: "create-1",
    });
    secrets.push(created.secret);
    expect(created.secret).toMatch(/^fs_live_[0-9a-z]{16}_[0-9A-Za-z]{28}$/);
    expect(parseKey(created.secret)?.keyId).toBe(created.apiKey?.keyId);
    const name = created.apiKey!.name;
    expect(created.apiKey?.status).toBe(ApiKeyStatus.ACTIVE);
    // A retried create with the same request_id answers the same, secret included.
    const retried = await admin.createApiKey({ parent: "accounts/life", apiKey: { displayName: "ci", scopes: [Scope.READ] }, requestId: "create-1" });
    expect(retried.secret).toBe(created.secret);

    // Use it: both header forms, from gRPC.
    const viaHeader = createClient(AccountService, withKey(created.secret));
    expect((await viaHeader.getAccount({ name: "accounts/life" })).account?.name).toBe("accounts/life");
    const viaBearer = createClient(AccountService, withKey(created.secret, "authorization"));
    expect((await viaBearer.getAccount({ name: "accounts/life" })).account?.name).toBe("accounts/life");

    // last_used is coalesced in memory and written by the flusher, to the minute.
    expect((await admin.getApiKey({ name })).apiKey?.lastUsedTime).toBeUndefined();
    await ts.app.apiKeys.flush();
    const lastUsed = (await admin.getApiKey({ name })).apiKey?.lastUsedTime;
    expect(Number(lastUsed?.seconds) * 1000).toBe(Math.floor(clock.now() / 60_000) * 60_000);

    // List: metadata only, no secret anywhere.
    const list = await admin.listApiKeys({ parent: "accounts/life" });
    const json = toJsonString(ListApiKeysResponseSchema, list);
    expect(list.apiKeys.map((k) => k.name)).toEqual([name]);
    expect(json).not.toContain(created.secret);
    expect(json).not.toContain(parseKey(created.secret)!.secret);
    expect(list.apiKeys[0].start).toBe(`fs_live_${created.apiKey!.keyId}`);

    const updated = await admin.updateApiKey({ apiKey: { name, displayName: "ci-renamed" }, updateMask: { paths: ["display_name"] } });
    expect(updated.apiKey?.displayName).toBe("ci-renamed");

    const rotated = await admin.rotateApiKey({ name, gracePeriod: durationFromMs(60_000) });
    secrets.push(rotated.secret);
    expect(rotated.oldKey).toBe(name);
    const newName = rotated.apiKey!.name;
    // Inside the grace period both work.
    await createClient(AccountService, withKey(created.secret)).getAccount({ name: "accounts/life" });
    await createClient(AccountService, withKey(rotated.secret)).getAccount({ name: "accounts/life" });
    clock.advance(61_000);
    await expectCode(createClient(AccountService, withKey(created.secret)).getAccount({ name: "accounts/life" }), Code.Unauthenticated, /expired/);
    await createClient(AccountService, withKey(rotated.secret)).getAccount({ name: "accounts/life" });

    await admin.revokeApiKey({ name: newName, reason: "leaked" });
    await expectCode(createClient(AccountService, withKey(rotated.secret)).getAccount({ name: "accounts/life" }), Code.Unauthenticated, /revoked/);

    const { events } = await admin.listApiKeyEvents({ parent: "accounts/life/apiKeys/-" });
    const story = events.reverse().map((e) => [e.apiKey, ApiKeyEventType[e.type]]);
    expect(story).toEqual([
      [name, "CREATED"],
      [name, "UPDATED"],
      [name, "ROTATED"],
      [newName, "CREATED"],
      [newName, "REVOKED"],
    ]);
    expect(events.find((e) => e.type === ApiKeyEventType.REVOKED)?.details.reason).toBe("leaked");
    expect(events[0].actor?.kind).toEqual({ case: "userId", value: "life-admin" });
  });

  it("the same message for an unknown key, a wrong secret and a bad checksum", async () => {
    const admin = await newAccount("probe");
    const { secret } = await mint(admin, "probe");
    const p = parseKey(secret)!;
    const wrongSecret = (await mint(admin, "probe")).secret.replace(/^fs_live_[0-9a-z]{16}/, `fs_live_${p.keyId}`);
    const badChecksum = secret.slice(0, -1) + (secret.endsWith("A") ? "B" : "A");
    const unknownKey = secret.replace(p.keyId, "0000000000000000");
    const messages = [];
    for (const k of [wrongSecret, badChecksum, unknownKey, "fs_live_short"]) {
      messages.push((await expectCode(createClient(AccountService, withKey(k)).getAccount({ name: "accounts/probe" }), Code.Unauthenticated)).rawMessage);
    }
    expect(new Set(messages)).toEqual(new Set(["invalid API key"]));
  });
});

describe("plan key limits", () => {
  it("the third key on Free fails with a detail naming the limit and the plans that allow more", async () => {
    const admin = await newAccount("limits");
    await mint(admin, "limits");
    await mint(admin, "limits");
    const err = await expectCode(mint(admin, "limits"), Code.FailedPrecondition, /allows 2 API keys/);
    const [detail] = err.findDetails(LimitExceededSchema);
    expect(detail.reason).toBe(LimitReason.API_KEY_LIMIT);
    expect(detail.limit).toBe(2n);
    expect(detail.used).toBe(2n);
    expect(detail.upgradeOptions.map((o) => [o.tier, o.limit, o.unlimited])).toEqual([
      [PlanTier.PRO, 10n, false],
      [PlanTier.ENTERPRISE, 0n, true],
    ]);
    const accounts = createClient(AccountService, ts.grpc(await ts.token({ projectId: "limits", role: "admin" })));
    expect((await accounts.getAccount({ name: "accounts/limits" })).account?.apiKeys).toMatchObject({ used: 2n, limit: 2n });
  });
});

describe("scopes and projects", () => {
  it("a read key cannot call write or admin methods; a developer cannot mint admin keys", async () => {
    const admin = await newAccount("scopes");
    const { secret } = await mint(admin, "scopes", { scopes: [Scope.READ] });
    const asKey = createClient(ApiKeyService, withKey(secret));
    await expectCode(asKey.createApiKey({ parent: "accounts/scopes", apiKey: { scopes: [Scope.READ] } }), Code.PermissionDenied, /scope admin; this key has read/);
    await expectCode(
      createClient(AccountService, withKey(secret)).updateAccount({ account: { name: "accounts/scopes", displayName: "x" }, updateMask: { paths: ["display_name"] } }),
      Code.PermissionDenied,
    );
    const dev = await keysAs("scopes", "developer");
    await expectCode(dev.createApiKey({ parent: "accounts/scopes", apiKey: { scopes: [Scope.ADMIN] } }), Code.InvalidArgument, /scope admin is above/);
    // A user token cannot manage keys at all.
    const user = await keysAs("scopes", "user");
    await expectCode(user.createApiKey({ parent: "accounts/scopes", apiKey: { scopes: [Scope.READ] } }), Code.PermissionDenied, /needs role developer/);
  });

  it("a key of project A never reads project B's keys or events", async () => {
    const a = await newAccount("proj-a");
    const b = await newAccount("proj-b");
    const bKey = await mint(b, "proj-b");
    const { secret } = await mint(a, "proj-a", { scopes: [Scope.READ] });
    const asA = createClient(ApiKeyService, withKey(secret));
    await expectCode(asA.getApiKey({ name: bKey.apiKey!.name }), Code.NotFound);
    await expectCode(asA.listApiKeys({ parent: "accounts/proj-b" }), Code.NotFound);
    await expectCode(asA.listApiKeyEvents({ parent: "accounts/proj-b/apiKeys/-" }), Code.NotFound);
    await expectCode(asA.listApiKeyEvents({ parent: bKey.apiKey!.name }), Code.NotFound);
    const verdict = await (await keysAs("proj-a", "developer")).verifyApiKey({ key: bKey.secret });
    expect(verdict.result).toBe(VerifyResult.UNKNOWN);
    expect(verdict.projectId).toBe("");
  });
});

describe("scoped keys", () => {
  it("are limited to their methods, expire, never exceed their parent, and die with it", async () => {
    const admin = await newAccount("scoped");
    const parent = await mint(admin, "scoped", { scopes: [Scope.READ, Scope.WRITE], spendCapMicros: 5_000_000n, allowedModels: ["openai/*"] });
    const asParent = createClient(ApiKeyService, withKey(parent.secret));
    // Minting needs an admin-scope key or a developer: the write key cannot.
    await expectCode(
      asParent.createScopedKey({ parent: "accounts/scoped", ttl: durationFromMs(60_000), spendCapMicros: 1n, allowedMethods: ["/formstate.v1.AccountService/GetAccount"] }),
      Code.PermissionDenied,
    );
    const dev = await keysAs("scoped", "developer");
    const child = await dev.createScopedKey({
      parent: "accounts/scoped",
      parentKey: parent.apiKey!.name,
      ttl: durationFromMs(60_000),
      spendCapMicros: 1_000_000n,
      allowedMethods: ["/formstate.v1.AccountService/GetAccount"],
      allowedModels: ["openai/gpt-4o*"],
    });
    secrets.push(child.secret);
    expect(child.apiKey?.kind).toBe(ApiKeyKind.SCOPED);
    expect(child.apiKey?.parentKey).toBe(parent.apiKey!.name);
    expect(child.apiKey?.scopes).toEqual([Scope.READ, Scope.WRITE]);
    const asChild = createClient(AccountService, withKey(child.secret));
    await asChild.getAccount({ name: "accounts/scoped" });
    await expectCode(asChild.listMembers({ parent: "accounts/scoped" }), Code.PermissionDenied, /scoped key may not call/);

    // Never more than the parent: budget, models, methods beyond its scopes.
    await expectCode(
      dev.createScopedKey({ parent: "accounts/scoped", parentKey: parent.apiKey!.name, ttl: durationFromMs(1000), spendCapMicros: 6_000_000n, allowedMethods: ["/formstate.v1.AccountService/GetAccount"] }),
      Code.InvalidArgument,
      /spend_cap_micros: exceeds the parent key's remaining budget/,
    );
    await expectCode(
      dev.createScopedKey({ parent: "accounts/scoped", parentKey: parent.apiKey!.name, ttl: durationFromMs(1000), spendCapMicros: 1n, allowedMethods: ["/formstate.v1.AccountService/GetAccount"], allowedModels: ["anthropic/*"] }),
      Code.InvalidArgument,
      /allowed_models/,
    );
    await expectCode(
      dev.createScopedKey({ parent: "accounts/scoped", parentKey: parent.apiKey!.name, ttl: durationFromMs(1000), spendCapMicros: 1n, allowedMethods: ["/formstate.v1.ApiKeyService/RevokeApiKey"] }),
      Code.InvalidArgument,
      /cannot be called with scope write/,
    );

    // Expiry.
    const shortLived = await dev.createScopedKey({ parent: "accounts/scoped", parentKey: parent.apiKey!.name, ttl: durationFromMs(5_000), spendCapMicros: 1n, allowedMethods: ["/formstate.v1.AccountService/GetAccount"] });
    secrets.push(shortLived.secret);
    await createClient(AccountService, withKey(shortLived.secret)).getAccount({ name: "accounts/scoped" });
    clock.advance(5_001);
    await expectCode(createClient(AccountService, withKey(shortLived.secret)).getAccount({ name: "accounts/scoped" }), Code.Unauthenticated, /expired/);

    // Revoking the parent revokes the child at once.
    await admin.revokeApiKey({ name: parent.apiKey!.name });
    await expectCode(asChild.getAccount({ name: "accounts/scoped" }), Code.Unauthenticated, /revoked/);
    expect((await admin.getApiKey({ name: child.apiKey!.name })).apiKey?.status).toBe(ApiKeyStatus.REVOKED);
  });

  it("a child never outlives its parent", async () => {
    const admin = await newAccount("outlive");
    const parent = await mint(admin, "outlive", { expireTime: { seconds: BigInt(Math.floor(clock.now() / 1000) + 30), nanos: 0 } });
    const child = await admin.createScopedKey({ parent: "accounts/outlive", parentKey: parent.apiKey!.name, ttl: durationFromMs(3_600_000), spendCapMicros: 1n, allowedMethods: ["/formstate.v1.AccountService/GetAccount"] });
    secrets.push(child.secret);
    expect(child.expireTime).toEqual(parent.apiKey?.expireTime);
  });
});

describe("rate limits", () => {
  it("limit+1 calls give exactly one RESOURCE_EXHAUSTED with headers and a retry delay; another key is unaffected", async () => {
    const admin = await newAccount("rate");
    const limited = await mint(admin, "rate", { rateLimit: { requestsPerSecond: 1, burst: 3 } });
    const other = await mint(admin, "rate", { rateLimit: { requestsPerSecond: 1, burst: 3 } });
    const client = createClient(AccountService, withKey(limited.secret));
    const headers: Headers[] = [];
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      try {
        await client.getAccount({ name: "accounts/rate" }, { onHeader: (h) => headers.push(h) });
        outcomes.push("ok");
      } catch (err) {
        const ce = ConnectError.from(err);
        outcomes.push(Code[ce.code]);
        expect(ce.metadata.get("retry-after")).toBe("1");
        expect(ce.metadata.get("x-ratelimit-remaining")).toBe("0");
        const [retry] = ce.findDetails(RetryInfoSchema);
        expect(Number(retry.retryDelay?.seconds ?? 0) * 1000 + (retry.retryDelay?.nanos ?? 0) / 1e6).toBe(1000);
      }
    }
    expect(outcomes).toEqual(["ok", "ok", "ok", "ResourceExhausted"]);
    expect(headers.map((h) => h.get("x-ratelimit-remaining"))).toEqual(["2", "1", "0"]);
    expect(headers[0].get("x-ratelimit-limit")).toBe("3");
    await createClient(AccountService, withKey(other.secret)).getAccount({ name: "accounts/rate" });
    clock.advance(1000);
    await client.getAccount({ name: "accounts/rate" });
    const { events } = await admin.listApiKeyEvents({ parent: limited.apiKey!.name, types: [ApiKeyEventType.RATE_LIMITED] });
    expect(events).toHaveLength(1);
  });

  it("VerifyApiKey counts against the key's limit only when asked", async () => {
    const admin = await newAccount("verify");
    const k = await mint(admin, "verify", { rateLimit: { requestsPerSecond: 1, burst: 1 } });
    const dev = await keysAs("verify", "developer");
    for (let i = 0; i < 3; i++) expect((await dev.verifyApiKey({ key: k.secret })).result).toBe(VerifyResult.VALID);
    const first = await dev.verifyApiKey({ key: k.secret, countAgainstRateLimit: true, clientIp: "203.0.113.9" });
    expect(first).toMatchObject({ valid: true, result: VerifyResult.VALID, projectId: "verify", apiKey: k.apiKey!.name });
    expect(first.scopes).toEqual([Scope.READ, Scope.WRITE]);
    expect((await dev.verifyApiKey({ key: k.secret, countAgainstRateLimit: true })).result).toBe(VerifyResult.RATE_LIMITED);
    expect((await dev.verifyApiKey({ key: "nope" })).result).toBe(VerifyResult.MALFORMED);
  });
});

describe("IP allowlists", () => {
  it("refuses a key used from outside its CIDRs, and audits a new address", async () => {
    const admin = await newAccount("ips");
    const outside = await mint(admin, "ips", { allowedCidrs: ["203.0.113.0/24"] });
    await expectCode(createClient(AccountService, withKey(outside.secret)).getAccount({ name: "accounts/ips" }), Code.PermissionDenied, /127\.0\.0\.1/);
    const inside = await mint(admin, "ips", { allowedCidrs: ["127.0.0.0/8"] });
    await createClient(AccountService, withKey(inside.secret)).getAccount({ name: "accounts/ips" });
    const v = await admin.verifyApiKey({ key: inside.secret, clientIp: "198.51.100.1" });
    expect(v.result).toBe(VerifyResult.IP_NOT_ALLOWED);
  });
});

describe("bad input on every method is INVALID_ARGUMENT naming the field", () => {
  it.each<[string, (c: Awaited<ReturnType<typeof keysAs>>) => Promise<unknown>, RegExp]>([
    ["CreateApiKey without scopes", (c) => c.createApiKey({ parent: "accounts/bad", apiKey: {} }), /scopes/],
    ["CreateApiKey bad parent", (c) => c.createApiKey({ parent: "bad", apiKey: { scopes: [Scope.READ] } }), /parent/],
    ["CreateApiKey bad cidr", (c) => c.createApiKey({ parent: "accounts/bad", apiKey: { scopes: [Scope.READ], allowedCidrs: ["300.1.1.1/8"] } }), /allowed_cidrs/],
    ["CreateApiKey bad model", (c) => c.createApiKey({ parent: "accounts/bad", apiKey: { scopes: [Scope.READ], allowedModels: ["GPT 4"] } }), /allowed_models/],
    ["CreateApiKey past expiry", (c) => c.createApiKey({ parent: "accounts/bad", apiKey: { scopes: [Scope.READ], expireTime: { seconds: 1n, nanos: 0 } } }), /expire_time/],
    ["CreateApiKey burst below rate", (c) => c.createApiKey({ parent: "accounts/bad", apiKey: { scopes: [Scope.READ], rateLimit: { requestsPerSecond: 5, burst: 2 } } }), /burst/],
    ["GetApiKey bad name", (c) => c.getApiKey({ name: "accounts/bad/keys/x" }), /name/],
    ["ListApiKeys oversized page", (c) => c.listApiKeys({ parent: "accounts/bad", pageSize: 1001 }), /page_size/],
    ["UpdateApiKey no mask", (c) => c.updateApiKey({ apiKey: { name: "accounts/bad/apiKeys/x" } }), /update_mask/],
    ["UpdateApiKey bad path", (c) => c.updateApiKey({ apiKey: { name: "accounts/bad/apiKeys/x" }, updateMask: { paths: ["secret_hash"] } }), /update_mask/],
    ["RevokeApiKey bad name", (c) => c.revokeApiKey({ name: "" }), /name/],
    ["RotateApiKey grace too long", (c) => c.rotateApiKey({ name: "accounts/bad/apiKeys/x", gracePeriod: durationFromMs(8 * 86_400_000) }), /grace_period/],
    ["CreateScopedKey no ttl", (c) => c.createScopedKey({ parent: "accounts/bad", spendCapMicros: 1n, allowedMethods: ["/formstate.v1.AccountService/GetAccount"] }), /ttl/],
    ["CreateScopedKey ttl over a day", (c) => c.createScopedKey({ parent: "accounts/bad", ttl: durationFromMs(86_401_000), spendCapMicros: 1n, allowedMethods: ["/formstate.v1.AccountService/GetAccount"] }), /ttl/],
    ["CreateScopedKey no methods", (c) => c.createScopedKey({ parent: "accounts/bad", ttl: durationFromMs(1000), spendCapMicros: 1n }), /allowed_methods/],
    ["CreateScopedKey zero cap", (c) => c.createScopedKey({ parent: "accounts/bad", ttl: durationFromMs(1000), allowedMethods: ["/formstate.v1.AccountService/GetAccount"] }), /spend_cap_micros/],
    ["VerifyApiKey empty key", (c) => c.verifyApiKey({ key: "" }), /key/],
    ["VerifyApiKey bad ip", (c) => c.verifyApiKey({ key: "x", clientIp: "not-an-ip" }), /client_ip/],
    ["ListApiKeyEvents bad parent", (c) => c.listApiKeyEvents({ parent: "accounts/bad" }), /parent/],
  ])("%s", async (_label, call, field) => {
    const admin = await keysAs("bad", "admin");
    const err = await expectCode(call(admin), Code.InvalidArgument);
    expect(err.rawMessage).toMatch(field);
  });
});

describe("storage", () => {
  it("a dump of the database contains no full key and no secret", async () => {
    expect(secrets.length).toBeGreaterThan(10);
    await ts.app.apiKeys.flush();
    let dump: string;
    let raw = "";
    if (ts.app.database.dialect === "postgres") {
      // Every table of the server's schema, read back through SQL (PostgreSQL's files are not ours to read).
      const { rows: [{ schema }] } = await sql<{ schema: string }>`select current_schema() as schema`.execute(ts.app.database.db);
      const tables = (await ts.app.database.db.introspection.getTables()).filter((t) => t.schema === schema);
      expect(tables.length).toBeGreaterThan(10);
      const rows = await Promise.all(tables.map((t) => sql`select * from ${sql.id(t.name)}`.execute(ts.app.database.db)));
      dump = rows.map((r) => JSON.stringify(r.rows)).join("\n");
    } else {
      const file = join(ts.dataDir, "formstate.db");
      const db = new Sqlite(file, { readonly: true });
      const tables = db.prepare("select name from sqlite_master where type = 'table'").all() as Array<{ name: string }>;
      dump = tables.map((t) => JSON.stringify(db.prepare(`select * from "${t.name}"`).all())).join("\n");
      db.close();
      raw = readFileSync(file).toString("latin1") + readFileSync(`${file}-wal`).toString("latin1");
    }
    for (const s of secrets) {
      const secretPart = parseKey(s)!.secret;
      for (const haystack of [dump, raw]) {
        expect(haystack).not.toContain(s);
        expect(haystack).not.toContain(secretPart);
      }
    }
    expect(dump).toContain(parseKey(secrets[0])!.keyId);
  });
});
