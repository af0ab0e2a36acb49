/**
 * The exact key and balance cache (src/cluster/state-cache.ts): VerifyApiKey
 * reads no row per call, yet sees every change at once — made by this
 * process (commit hooks), by another process on the same SQLite file
 * (`PRAGMA data_version`), and by another instance (the Redis state channel
 * on PostgreSQL; the shared file on SQLite). Every server runs on a frozen
 * clock, so no entry ever expires on its own: only invalidation can make a
 * change visible. A fast-check property interleaves writes and reads and
 * compares every cached answer with a fresh read of the store.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import Sqlite from "better-sqlite3";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService, VerifyResult } from "../../gen/formstate/v1/api_key_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import type { UserPrincipal } from "../../src/auth/principal.js";
import { ManualClock } from "../../src/clock.js";
import { Coherence, ExactCache, arrival } from "../../src/cluster/state-cache.js";
import type { Database } from "../../src/db/database.js";
import { createLogger } from "../../src/logger.js";
import { statusOf } from "../../src/keys/key-authority.js";
import * as keyRepo from "../../src/keys/api-key-repository.js";
import * as ledger from "../../src/ledger/ledger.js";
import { REDIS_URL, missingParts } from "../scale/cluster.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const onPostgres = /^postgres(ql)?:\/\//.test(process.env.DATABASE_URL ?? "");
const keyIdOf = (name: string) => name.split("/").pop()!;

function asKey(ts: TestServer, secret: string) {
  return createGrpcTransport({ baseUrl: ts.url, interceptors: [(next) => (req) => (req.header.set("x-api-key", secret), next(req))] });
}

/** An account with an admin key (the VerifyApiKey caller), a plain key and a capped key, and credits. */
async function setUp(ts: TestServer, projectId: string, credits = 10_000_000) {
  const admin = await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` });
  await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
  await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", projectId).execute();
  ts.app.accounts.invalidatePlan(projectId);
  const keys = createClient(ApiKeyService, ts.grpc(admin));
  const caller = await keys.createApiKey({ parent: `accounts/${projectId}`, apiKey: { displayName: "caller", scopes: [Scope.ADMIN] } });
  const plain = await keys.createApiKey({ parent: `accounts/${projectId}`, apiKey: { displayName: "plain", scopes: [Scope.READ] } });
  const capped = await keys.createApiKey({ parent: `accounts/${projectId}`, apiKey: { displayName: "capped", scopes: [Scope.READ], spendCapMicros: 1_000_000n } });
  await ts.app.database.transaction((tx) => ledger.book(tx, { projectId, kind: "grant", amountMicros: credits, idempotencyKey: `grant:${projectId}` }, ts.app.clock.now()));
  return { keys, caller, plain, capped };
}

describe("ExactCache", () => {
  /** A cache over a fake store whose data_version the test moves. */
  function fixture() {
    const store = { version: 1, looks: 0, listeners: [] as ((c: { projects: Set<string>; keys: Set<string>; spend: Set<string> }) => void)[] };
    const database = { dialect: "sqlite", onCommit: (l: never) => store.listeners.push(l), dataVersion: () => (store.looks++, store.version) } as unknown as Database;
    const coherence = new Coherence(database, createLogger("silent"));
    const cache = new ExactCache<string>(coherence, () => 60_000);
    coherence.register((d) => cache.drop(d?.keys));
    const commit = (keys: string[]) => store.listeners.forEach((l) => l({ projects: new Set(), keys: new Set(keys), spend: new Set() }));
    return { store, cache, commit };
  }
  const gate = () => {
    let open!: (v: string) => void;
    return { promise: new Promise<string>((r) => (open = r)), open: (v: string) => open(v) };
  };

  it("does not keep a value whose load raced a commit of it, nor one that raced another process's commit", async () => {
    for (const race of ["commit", "data_version"] as const) {
      const { store, cache, commit } = fixture();
      const slow = gate();
      const first = cache.get("k", 0, () => slow.promise);
      // The write lands while the old value is on its way back.
      if (race === "commit") commit(["k"]);
      else store.version++;
      slow.open("old");
      expect(await first).toBe("old"); // that one caller read before the write: fine
      expect(await cache.get("k", 1, async () => "new")).toBe("new");
      expect(await cache.get("k", 2, async () => "never")).toBe("new");
      expect(cache.size()).toBe(1);
    }
  });

  it("one data_version check serves every request that arrived before it; a later arrival, or no stamp, looks again", async () => {
    const { store, cache } = fixture();
    const early = arrival();
    const late = arrival();
    expect(await cache.get("a", 0, async () => "a1", late)).toBe("a1");
    const looks = store.looks;
    // Both requests arrived before that check: their other reads need no new look.
    expect(await cache.get("a", 0, async () => "never", early)).toBe("a1");
    expect(await cache.get("b", 0, async () => "b1", late)).toBe("b1");
    expect(store.looks).toBe(looks);
    // Another process commits now: a request read before it may still be answered from before it...
    store.version++;
    expect(await cache.get("a", 1, async () => "a2", late)).toBe("a1");
    // ...but one read after it is not, and nor is a read without a stamp.
    expect(await cache.get("a", 1, async () => "a2", arrival())).toBe("a2");
    expect(store.looks).toBe(looks + 1);
    store.version++;
    expect(await cache.get("b", 2, async () => "b2")).toBe("b2");
    expect(await cache.get("b", 2, async () => "b3")).toBe("b2");
    expect(store.looks).toBe(looks + 3);
  });

  it("a look at data_version that fails serves no one: the same request's next read looks again", async () => {
    const { store, cache } = fixture();
    const since = arrival();
    expect(await cache.get("a", 0, async () => "a1", since)).toBe("a1");
    const late = arrival();
    // Another process commits, and the next look at data_version fails (the fixture reads store.version).
    const moved = store.version + 1;
    let fail = true;
    Object.defineProperty(store, "version", {
      get: () => {
        if (fail) throw new Error("SQLITE_BUSY");
        return moved;
      },
    });
    await expect(cache.get("a", 1, async () => "a2", late)).rejects.toThrow("SQLITE_BUSY");
    fail = false;
    expect(await cache.get("a", 1, async () => "a2", late)).toBe("a2");
  });

  it("a commit by another process during a load is found by the next request's check, not kept", async () => {
    const { store, cache } = fixture();
    const slow = gate();
    const first = cache.get("k", 0, () => slow.promise, arrival());
    store.version++; // commits after the load read "old"
    slow.open("old");
    expect(await first).toBe("old");
    expect(await cache.get("k", 1, async () => "new", arrival())).toBe("new");
    expect(await cache.get("k", 2, async () => "never", arrival())).toBe("new");
  });

  it("drops an entry on its commit and everything on another process's commit; other entries stay", async () => {
    const { store, cache, commit } = fixture();
    await cache.get("a", 0, async () => "a1");
    await cache.get("b", 0, async () => "b1");
    commit(["a"]);
    expect(await cache.get("a", 1, async () => "a2")).toBe("a2");
    expect(await cache.get("b", 1, async () => "b2")).toBe("b1");
    store.version++;
    expect(await cache.get("b", 2, async () => "b3")).toBe("b3");
  });
});

describe("VerifyApiKey from the exact cache", () => {
  const clock = new ManualClock(Date.now());
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({}, { clock });
  });
  afterAll(async () => {
    await ts?.close();
  });

  it.skipIf(onPostgres)("reads no table per call once warm, and sees this process's writes at once", async () => {
    const { caller, plain, capped } = await setUp(ts, "vc-warm");
    const verify = createClient(ApiKeyService, asKey(ts, caller.secret));
    await verify.verifyApiKey({ key: plain.secret });
    await verify.verifyApiKey({ key: capped.secret });
    // Count statements on the tables a verification needs (background pollers read others; data_version reads none).
    const proto = Object.getPrototypeOf(new Sqlite(":memory:").prepare("select 1")) as Record<string, (...a: unknown[]) => unknown>;
    const seen: string[] = [];
    let looks = 0;
    const originals = Object.fromEntries(["run", "get", "all", "iterate"].map((m) => [m, proto[m]]));
    for (const m of Object.keys(originals)) {
      proto[m] = function (this: { source: string }, ...a: unknown[]) {
        if (this.source === "PRAGMA data_version") looks++;
        if (/"(api_key|account|usage_authorization|credit_transaction)"/.test(this.source)) seen.push(this.source);
        return originals[m].apply(this, a);
      };
    }
    try {
      for (let i = 0; i < 20; i++) {
        const [p, c] = await Promise.all([verify.verifyApiKey({ key: plain.secret }), verify.verifyApiKey({ key: capped.secret })]);
        expect([p.result, c.result, p.creditBalanceMicros, c.remainingSpendMicros]).toEqual([VerifyResult.VALID, VerifyResult.VALID, 10_000_000n, 1_000_000n]);
      }
    } finally {
      Object.assign(proto, originals);
    }
    // Nothing is read, a capped key's spend included (its own exact cache).
    expect(seen).toEqual([]);
    // One look at data_version at most per call (the caller's key, the verified key and the balance share it).
    expect(looks).toBeGreaterThan(0);
    expect(looks).toBeLessThanOrEqual(40);

    // A debit, spend on the capped key and a revoke, each through this process: seen by the very next call.
    const spendTx = (n: number) => ts.app.database.transaction(async (tx) => {
      await ledger.book(tx, { projectId: "vc-warm", kind: "usage_debit", amountMicros: -n, idempotencyKey: `d:${randomBytes(4).toString("hex")}` }, clock.now());
      await ts.app.apiKeys.addSpend(tx, keyIdOf(capped.apiKey!.name), n);
    });
    await spendTx(250_000);
    const after = await verify.verifyApiKey({ key: capped.secret });
    expect([after.creditBalanceMicros, after.remainingSpendMicros]).toEqual([9_750_000n, 750_000n]);
    // Again, on the same cached key row: its spend is not the one seen with that row before.
    await spendTx(250_000);
    const again = await verify.verifyApiKey({ key: capped.secret });
    expect([again.creditBalanceMicros, again.remainingSpendMicros]).toEqual([9_500_000n, 500_000n]);
    await ts.client(ApiKeyService, ts.grpc(await ts.token({ projectId: "vc-warm", role: "admin" }))).revokeApiKey({ name: plain.apiKey!.name });
    expect((await verify.verifyApiKey({ key: plain.secret })).result).toBe(VerifyResult.REVOKED);
  });

  it("usages written by the set-based group commit (BatchRecordUsage) are seen by the next VerifyApiKey", async () => {
    const { keys, caller } = await setUp(ts, "vc-set");
    const capped = await keys.createApiKey({ parent: "accounts/vc-set", apiKey: { displayName: "writer", scopes: [Scope.READ, Scope.WRITE], spendCapMicros: 1_000_000n } });
    const admin = ts.grpc(await ts.token({ projectId: "vc-set", role: "admin" }));
    await ts.client(ModelService, admin).createModel({ modelId: "vc-set/m", model: { inputPriceMicrosPerMillion: 1_000_000n } });
    const verify = createClient(ApiKeyService, asKey(ts, caller.secret));
    // Warm: the balance and the capped key's spend are cached now.
    expect((await verify.verifyApiKey({ key: capped.secret })).creditBalanceMicros).toBe(10_000_000n);
    // Ten usages in one call: one run of the set writer (one balance move, one spend move for the key).
    const usage = createClient(UsageService, asKey(ts, capped.secret));
    const res = await usage.batchRecordUsage({
      parent: "accounts/vc-set",
      requests: Array.from({ length: 10 }, (_, i) => ({ requestId: `set-${i}`, usage: { case: "modelUsage" as const, value: { model: "models/vc-set/m", inputTokens: 1_000n } } })),
    });
    expect(res.results.every((r) => r.result.case === "response")).toBe(true);
    const after = await verify.verifyApiKey({ key: capped.secret });
    // The plan's monthly credits were booked with the first debit: the fresh balance says what to expect.
    const fresh = BigInt(await ledger.balanceOf(ts.app.database.db, "vc-set"));
    expect(fresh).not.toBe(10_000_000n);
    expect([after.creditBalanceMicros, after.remainingSpendMicros]).toEqual([fresh, 1_000_000n - 10_000n]);
  });

  it("a hold expiring brings its credits back on the next VerifyApiKey, with nothing written meanwhile", async () => {
    const { caller, plain } = await setUp(ts, "vc-hold");
    const verify = createClient(ApiKeyService, asKey(ts, caller.secret));
    const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId: "vc-hold", role: "developer" })));
    // (The first use also grants the plan's included credits: the hold's answer says what is left.)
    const held = await usage.authorizeUsage({ parent: "accounts/vc-hold", requestId: "h", ttl: durationFromMs(60_000), estimate: { case: "estimatedCostMicros", value: 4_000_000n } });
    expect((await verify.verifyApiKey({ key: plain.secret })).creditBalanceMicros).toBe(held.balanceMicros);
    clock.advance(59_999);
    expect((await verify.verifyApiKey({ key: plain.secret })).creditBalanceMicros).toBe(held.balanceMicros);
    clock.advance(1); // the hold's expiry: the cached balance knows it is due
    expect((await verify.verifyApiKey({ key: plain.secret })).creditBalanceMicros).toBe(held.balanceMicros + 4_000_000n);
  });

  // Another process writing the same SQLite file: only data_version can tell this one.
  it.skipIf(onPostgres)("sees another process's writes to the SQLite file on the next call (data_version)", async () => {
    const { caller, plain, capped } = await setUp(ts, "vc-foreign");
    const verify = createClient(ApiKeyService, asKey(ts, caller.secret));
    const asPlain = createClient(AccountService, asKey(ts, plain.secret));
    expect((await verify.verifyApiKey({ key: plain.secret })).creditBalanceMicros).toBe(10_000_000n);
    expect((await verify.verifyApiKey({ key: capped.secret })).remainingSpendMicros).toBe(1_000_000n);
    await asPlain.getAccount({ name: "accounts/vc-foreign" });

    const other = new Sqlite(ts.app.config.databaseUrl);
    other.pragma("busy_timeout = 5000");
    try {
      other.prepare("update account set credit_balance_micros = credit_balance_micros - 1234 where project_id = ?").run("vc-foreign");
      expect((await verify.verifyApiKey({ key: plain.secret })).creditBalanceMicros).toBe(10_000_000n - 1234n);
      other.prepare("update api_key set spent_micros = 400000 where key_id = ?").run(keyIdOf(capped.apiKey!.name));
      expect((await verify.verifyApiKey({ key: capped.secret })).remainingSpendMicros).toBe(600_000n);
      other.prepare("update api_key set status = 'revoked', revoke_time = ? where key_id = ?").run(clock.now(), keyIdOf(plain.apiKey!.name));
      expect((await verify.verifyApiKey({ key: plain.secret })).result).toBe(VerifyResult.REVOKED);
      await expectCode(asPlain.getAccount({ name: "accounts/vc-foreign" }), Code.Unauthenticated, /revoked/);
      // Requests through Connect's own handler (Connect protocol, HTTP/1.1) are stamped on arrival too.
      const overConnect = createClient(ApiKeyService, ts.connect(caller.secret));
      expect((await overConnect.verifyApiKey({ key: capped.secret })).creditBalanceMicros).toBe(10_000_000n - 1234n);
      other.prepare("update account set credit_balance_micros = credit_balance_micros - 1000 where project_id = ?").run("vc-foreign");
      expect((await overConnect.verifyApiKey({ key: capped.secret })).creditBalanceMicros).toBe(10_000_000n - 2234n);
    } finally {
      other.close();
    }
  });
});

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  it("needs PostgreSQL and Redis under CI", () => {
    throw new Error(`missing: ${missing}`);
  });
} else if (missing) {
  console.warn(`skipping the cross-instance cache tests: missing ${missing}`);
}

describe.skipIf(Boolean(missing))("across instances (one store, one Redis)", () => {
  const clock = new ManualClock(Date.now());
  const shared = mkdtempSync(join(tmpdir(), "formstate-xcache-"));
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    // One data dir (same dev-issuer keys), one SQLite file, one Redis prefix; on PostgreSQL one schema.
    const env: Record<string, string> = { FORMSTATE_DATA_DIR: shared, REDIS_URL, FORMSTATE_REDIS_PREFIX: `test:xcache:${randomBytes(4).toString("hex")}:` };
    if (!onPostgres) env.DATABASE_URL = join(shared, "formstate.db");
    a = await startTestServer(env, { clock });
    b = await startTestServer({ ...env, ...(onPostgres && { DATABASE_URL: a.app.config.databaseUrl }) }, { clock });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    rmSync(shared, { recursive: true, force: true });
  });

  it("a revoke, a debit and key spend through A are seen by B's very next VerifyApiKey", async () => {
    const { caller, plain, capped } = await setUp(a, "vc-x");
    const onB = createClient(ApiKeyService, asKey(b, caller.secret));
    // Cached on B.
    for (let i = 0; i < 2; i++) {
      expect((await onB.verifyApiKey({ key: plain.secret })).creditBalanceMicros).toBe(10_000_000n);
      expect((await onB.verifyApiKey({ key: capped.secret })).remainingSpendMicros).toBe(1_000_000n);
    }
    await a.app.database.transaction(async (tx) => {
      await ledger.book(tx, { projectId: "vc-x", kind: "usage_debit", amountMicros: -300_000, idempotencyKey: "x-debit" }, clock.now());
      await a.app.apiKeys.addSpend(tx, keyIdOf(capped.apiKey!.name), 300_000);
    });
    const seen = await onB.verifyApiKey({ key: capped.secret });
    expect([seen.creditBalanceMicros, seen.remainingSpendMicros]).toEqual([9_700_000n, 700_000n]);

    await createClient(ApiKeyService, asKey(a, caller.secret)).revokeApiKey({ name: plain.apiKey!.name });
    expect((await onB.verifyApiKey({ key: plain.secret })).result).toBe(VerifyResult.REVOKED);
    await expectCode(createClient(AccountService, asKey(b, plain.secret)).getAccount({ name: "accounts/vc-x" }), Code.Unauthenticated, /revoked/);
  });
});

describe("property: reads through the cache always equal a fresh read of the store", () => {
  const clock = new ManualClock(Date.now());
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({}, { clock });
  });
  afterAll(async () => {
    await ts?.close();
  });

  type Op =
    | { kind: "grant" | "debit"; amount: number }
    | { kind: "spend"; key: number; amount: number }
    | { kind: "revoke" | "rotate" | "read"; key: number }
    | { kind: "cap"; key: number; cap: number }
    | { kind: "foreign"; key: number; amount: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constantFrom("grant" as const, "debit" as const), amount: fc.integer({ min: 1, max: 1_000_000 }) }),
    fc.record({ kind: fc.constant("spend" as const), key: fc.nat(2), amount: fc.integer({ min: 1, max: 100_000 }) }),
    fc.record({ kind: fc.constantFrom("revoke" as const, "rotate" as const, "read" as const), key: fc.nat(2) }),
    fc.record({ kind: fc.constant("cap" as const), key: fc.nat(2), cap: fc.integer({ min: 0, max: 2_000_000 }) }),
    // Another process on the SQLite file (on PostgreSQL: a plain grant through this instance).
    fc.record({ kind: fc.constant("foreign" as const), key: fc.nat(2), amount: fc.integer({ min: 1, max: 1_000 }) }),
  );

  it("random interleavings of debits, grants, spend, revoke, rotate, cap updates and foreign writes", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(op, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 12 }), async (steps) => {
        const projectId = `vc-prop-${run++}`;
        const admin: UserPrincipal = { kind: "user", subject: `${projectId}-admin`, projectId, role: Role.ADMIN, roleSource: "token", expiresAt: 0 };
        await ts.app.accounts.create(admin, {}, "");
        await ts.app.database.db.updateTable("account").set({ plan_tier: "enterprise" }).where("project_id", "=", projectId).execute();
        ts.app.accounts.invalidatePlan(projectId);
        const settings = { displayName: "k", scopes: [Scope.READ], environment: "live" as const, expireTime: null, rateLimit: null, spendCapMicros: 1_000_000, allowedCidrs: [], allowedModels: [] };
        const keys: { name: string; secret: string }[] = [];
        for (let i = 0; i < 3; i++) {
          const { row, secret } = await ts.app.apiKeys.create(admin, `accounts/${projectId}`, settings, "", "");
          keys.push({ name: `accounts/${projectId}/apiKeys/${row.key_id}`, secret });
        }
        const other = onPostgres ? undefined : new Sqlite(ts.app.config.databaseUrl);
        other?.pragma("busy_timeout = 5000");
        let n = 0;
        const apply = async (o: Op): Promise<void> => {
          const now = clock.now();
          switch (o.kind) {
            case "grant":
            case "debit":
              await ts.app.database.transaction((tx) =>
                ledger.book(tx, { projectId, kind: o.kind === "grant" ? "grant" : "usage_debit", amountMicros: o.kind === "grant" ? o.amount : -o.amount, idempotencyKey: `p${n++}` }, now),
              );
              return;
            case "spend":
              await ts.app.database.transaction((tx) => ts.app.apiKeys.addSpend(tx, keyIdOf(keys[o.key].name), o.amount));
              return;
            case "revoke":
              await ts.app.apiKeys.revoke(admin, keys[o.key].name, "", "");
              return;
            case "rotate": {
              const r = await ts.app.apiKeys.rotate(admin, keys[o.key].name, 0, "", "").catch(() => undefined); // a revoked or rotated key cannot be
              if (r) keys.push({ name: `accounts/${projectId}/apiKeys/${r.row.key_id}`, secret: r.secret });
              return;
            }
            case "cap":
              await ts.app.apiKeys.update(admin, keys[o.key].name, ["spend_cap_micros"], { ...settings, spendCapMicros: o.cap }, "").catch(() => undefined);
              return;
            case "foreign":
              if (!other) {
                await ts.app.database.transaction((tx) => ledger.book(tx, { projectId, kind: "grant", amountMicros: o.amount, idempotencyKey: `p${n++}` }, now));
                return;
              }
              other.prepare("update account set credit_balance_micros = credit_balance_micros + ? where project_id = ?").run(o.amount, projectId);
              other.prepare("update api_key set spent_micros = spent_micros + ? where key_id = ?").run(o.amount, keyIdOf(keys[o.key].name));
              return;
            case "read":
              await ts.app.apiKeys.verify(admin, keys[o.key].secret, "");
              await ts.app.accounts.creditBalance(projectId);
          }
        };
        try {
          for (const step of steps) {
            // The ops of a step run concurrently (reads racing writes); then every cached answer must equal the store.
            await Promise.all(step.map(apply));
            expect(await ts.app.accounts.creditBalance(projectId)).toEqual(await ledger.balanceOf(ts.app.database.db, projectId));
            for (const k of keys) {
              const v = await ts.app.apiKeys.verify(admin, k.secret, "");
              const fresh = (await keyRepo.findKey(ts.app.database.db, keyIdOf(k.name)))!;
              expect(v.result).toBe(statusOf(fresh, clock.now()) === "active" || statusOf(fresh, clock.now()) === "rotated" ? "valid" : statusOf(fresh, clock.now()));
              const remaining = fresh.spend_cap_micros === null ? null : Math.max(0, fresh.spend_cap_micros - fresh.spent_micros);
              if ("effective" in v) expect(v.effective!.remainingSpendMicros).toBe(remaining);
            }
          }
        } finally {
          other?.close();
        }
      }),
      { numRuns: 25 },
    );
  }, 120_000);
});
