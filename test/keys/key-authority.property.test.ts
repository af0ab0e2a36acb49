/**
 * "Authority never grows", as a property: random sequences of create,
 * createScoped, update, rotate, revoke, verify and time passing, by random
 * callers (users of every role, and the keys made along the way, scoped ones
 * included), against the key domain of a real app over a real SQLite file
 * (or PostgreSQL with DATABASE_URL=postgres://…). After every step:
 * - no operation succeeded on a key above the caller's rank, and no caller
 *   obtained a key above its own rank;
 * - every scoped key is at most its parent on every stored field
 *   (scopes, models, methods, spend cap, expiry, rate limit), expires within
 *   24 h of its creation, and is refused (authentication and VerifyApiKey)
 *   once its parent is revoked or expired, rotated past its grace included;
 * - no key's rate-limit override exceeds the plan (requests/s and burst);
 * - a key presented with the other environment's prefix never verifies.
 *
 * The oracle below is written independently of src/keys/key-authority.ts.
 * FC_RUNS sets the number of runs (default 12), FC_SEED replays a failure
 * (fast-check prints the seed).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import type { ApiKeyPrincipal, UserPrincipal } from "../../src/auth/principal.js";
import { ManualClock } from "../../src/clock.js";
import type { ApiKeyRow } from "../../src/keys/api-key-repository.js";
import type { KeyCaller, KeySettings } from "../../src/keys/api-keys.js";
import { formatKey, parseKey } from "../../src/keys/key-format.js";
import { isPostgresUrl } from "../../src/db/database.js";
import { defaultPlans } from "../../src/plans/plans.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const RUNS = Number(process.env.FC_RUNS ?? 12);
const PLAN_RATE = { requestsPerSecond: 10, burst: 20 };
const DAY = 24 * 3_600_000;
const METHODS = ["/formstate.v1.AccountService/GetAccount", "/formstate.v1.ApiKeyService/RevokeApiKey", "/formstate.v1.ApiKeyService/ListApiKeys"];
const MODELS = ["openai/*", "openai/gpt-4o*", "openai/gpt-4o-mini", "anthropic/*"];

const clock = new ManualClock(Date.now());
let ts: TestServer;
let plansDir: string;

// ---- the oracle (independent of the code under test) ----
const scopeRank: Record<string, number> = { read: 1, write: 2, admin: 3 };
const rankOfScopes = (csv: string) => Math.max(0, ...csv.split(",").filter(Boolean).map((s) => scopeRank[s]));
const rankOfCaller = (c: KeyCaller) =>
  c.kind === "user" ? ({ [Role.USER]: 1, [Role.DEVELOPER]: 2, [Role.ADMIN]: 3 } as Record<number, number>)[c.role] : c.scope;
const covered = (bound: string[], p: string) =>
  bound.length === 0 || bound.some((b) => (b.endsWith("*") ? p.startsWith(b.slice(0, -1)) : b === p));
const dead = (r: ApiKeyRow, now: number) => r.status === "revoked" || (r.expire_time !== null && r.expire_time <= now);
const list = (json: string) => JSON.parse(json) as string[];

type Op =
  | { t: "create"; by: number; scopes: Scope[]; rate: [number, number] | null; cap: number | null; models: string[]; ttl: number | null }
  | { t: "scoped"; by: number; parent: number; ttl: number; cap: number; methods: string[]; models: string[] }
  | { t: "update"; by: number; key: number; field: string; value: number; models: string[]; scopes: Scope[] }
  | { t: "rotate"; by: number; key: number; grace: number }
  | { t: "revoke"; by: number; key: number }
  | { t: "verify"; by: number; key: number }
  | { t: "wait"; ms: number };

const scopesArb = fc.subarray([Scope.READ, Scope.WRITE, Scope.ADMIN], { minLength: 1 });
const modelsArb = fc.subarray(MODELS, { maxLength: 2 });
const caller = fc.nat(20);
const key = fc.nat(30);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    t: fc.constant("create" as const),
    by: caller,
    scopes: scopesArb,
    rate: fc.option(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 25 })), { nil: null }),
    cap: fc.option(fc.integer({ min: 1, max: 5_000 }), { nil: null }),
    models: modelsArb,
    ttl: fc.option(fc.integer({ min: 1_000, max: 3 * DAY }), { nil: null }),
  }),
  fc.record({
    t: fc.constant("scoped" as const),
    by: caller,
    parent: fc.integer({ min: -1, max: 30 }),
    ttl: fc.integer({ min: 1_000, max: DAY }),
    cap: fc.integer({ min: 1, max: 6_000 }),
    methods: fc.subarray(METHODS, { minLength: 1 }),
    models: modelsArb,
  }),
  fc.record({
    t: fc.constant("update" as const),
    by: caller,
    key,
    field: fc.constantFrom("scopes", "expire_time", "rate_limit", "spend_cap_micros", "allowed_models", "display_name"),
    value: fc.integer({ min: -1, max: 3 * DAY }),
    models: modelsArb,
    scopes: scopesArb,
  }),
  fc.record({ t: fc.constant("rotate" as const), by: caller, key, grace: fc.integer({ min: 0, max: 120_000 }) }),
  fc.record({ t: fc.constant("revoke" as const), by: caller, key }),
  fc.record({ t: fc.constant("verify" as const), by: caller, key }),
  fc.record({ t: fc.constant("wait" as const), ms: fc.integer({ min: 1, max: 200_000 }) }),
);

beforeAll(async () => {
  // One plan without a key-count limit, so sequences reach the interesting states.
  plansDir = mkdtempSync(join(tmpdir(), "formstate-plans-"));
  const plans = join(plansDir, "plans.json");
  writeFileSync(plans, JSON.stringify(defaultPlans.map((p) => ({ ...p, apiKeyLimit: null, rateLimit: PLAN_RATE }))));
  ts = await startTestServer({ FORMSTATE_PLANS_FILE: plans }, { clock });
}, 60_000);
afterAll(async () => {
  await ts?.close();
  rmSync(plansDir, { recursive: true, force: true });
});

let project = 0;

async function scenario(ops: Op[]): Promise<void> {
  const keys = ts.app.apiKeys;
  const projectId = `prop-${++project}`;
  await ts.app.accounts.ensure(projectId, "owner", "property");
  const users: UserPrincipal[] = [Role.USER, Role.DEVELOPER, Role.ADMIN].map((role) => ({
    kind: "user",
    subject: `u${role}`,
    projectId,
    role,
    roleSource: "token",
    expiresAt: 0,
  }));
  /** Every secret made so far, with the key id it belongs to. */
  const secrets: { keyId: string; secret: string }[] = [];
  const rowOf = async (keyId: string) => (await ts.app.database.db.selectFrom("api_key").selectAll().where("key_id", "=", keyId).executeTakeFirst())!;
  const pickSecret = (i: number) => (secrets.length ? secrets[i % secrets.length] : undefined);

  /** A caller: one of the three users, or one of the keys made so far (if it still authenticates). */
  async function callerOf(i: number): Promise<KeyCaller | undefined> {
    if (i < 3 || secrets.length === 0) return users[i % 3];
    try {
      return (await keys.authenticate(pickSecret(i)!.secret, "127.0.0.1")) as ApiKeyPrincipal;
    } catch {
      return undefined;
    }
  }
  const nameOf = (keyId: string) => `accounts/${projectId}/apiKeys/${keyId}`;
  /** Runs an operation; an expected refusal is a ConnectError of a precise code, never INTERNAL. */
  async function attempt<T>(f: () => Promise<T>): Promise<T | undefined> {
    try {
      return await f();
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      expect([Code.InvalidArgument, Code.PermissionDenied, Code.FailedPrecondition, Code.NotFound], `${Code[err.code]}: ${err.rawMessage}`).toContain(err.code);
      return undefined;
    }
  }

  for (const op of ops) {
    const now = clock.now();
    if (op.t === "wait") {
      clock.advance(op.ms);
      await checkInvariants();
      continue;
    }
    const by = await callerOf(op.by);
    if (!by) continue;
    const target = pickSecret(op.t === "scoped" ? op.parent : op.t === "create" ? 0 : op.key);
    const before = target ? await rowOf(target.keyId) : undefined;
    switch (op.t) {
      case "create": {
        const settings: KeySettings = {
          displayName: "k",
          scopes: op.scopes,
          environment: op.by % 2 ? "live" : "test",
          expireTime: op.ttl === null ? null : now + op.ttl,
          rateLimit: op.rate && { requestsPerSecond: op.rate[0], burst: op.rate[1] },
          spendCapMicros: op.cap,
          allowedCidrs: [],
          allowedModels: op.models,
        };
        const made = await attempt(() => keys.create(by, `accounts/${projectId}`, settings, "", ""));
        if (made) {
          expect(rankOfScopes(made.row.scopes), "created a key above the caller").toBeLessThanOrEqual(rankOfCaller(by));
          secrets.push({ keyId: made.row.key_id, secret: made.secret });
        }
        break;
      }
      case "scoped": {
        const parentKey = op.parent >= 0 && target ? nameOf(target.keyId) : "";
        const made = await attempt(() =>
          keys.createScoped(by, `accounts/${projectId}`, { parentKey, ttlMs: op.ttl, spendCapMicros: op.cap, allowedMethods: op.methods, allowedModels: op.models, displayName: "s" }, "", ""),
        );
        if (made) {
          expect(rankOfScopes(made.row.scopes), "minted a scoped key above the caller").toBeLessThanOrEqual(rankOfCaller(by));
          secrets.push({ keyId: made.row.key_id, secret: made.secret });
        }
        break;
      }
      case "update": {
        if (!target || !before) break;
        const v = op.value;
        const settings: KeySettings = {
          displayName: "renamed",
          scopes: op.scopes,
          environment: "live",
          expireTime: v < 0 ? null : now + v,
          rateLimit: v < 0 ? null : { requestsPerSecond: 1 + (v % 12), burst: 1 + (v % 25) },
          spendCapMicros: v < 0 ? null : v % 7_000,
          allowedCidrs: [],
          allowedModels: op.models,
        };
        const updated = await attempt(() => keys.update(by, nameOf(target.keyId), [op.field], settings, ""));
        if (updated) {
          const selfScoped = by.kind === "api_key" && by.keyKind === "scoped";
          expect(selfScoped, "a scoped key updated a key").toBe(false);
          expect(rankOfScopes(before.scopes), "updated a key above the caller").toBeLessThanOrEqual(rankOfCaller(by));
          expect(rankOfScopes(updated.scopes), "shaped a key above the caller").toBeLessThanOrEqual(rankOfCaller(by));
        }
        break;
      }
      case "rotate": {
        if (!target || !before) break;
        const rotated = await attempt(() => keys.rotate(by, nameOf(target.keyId), op.grace, "", ""));
        if (rotated) {
          expect(rankOfScopes(before.scopes), "rotated a key above the caller (and got its secret)").toBeLessThanOrEqual(rankOfCaller(by));
          secrets.push({ keyId: rotated.row.key_id, secret: rotated.secret });
        }
        break;
      }
      case "revoke": {
        if (!target || !before) break;
        const revoked = await attempt(() => keys.revoke(by, nameOf(target.keyId), "prop", ""));
        if (revoked && by.kind === "api_key" && by.keyKind === "scoped") expect(target.keyId, "a scoped key revoked another key").toBe(by.keyId);
        else if (revoked) expect(rankOfScopes(before.scopes), "revoked a key above the caller").toBeLessThanOrEqual(rankOfCaller(by));
        break;
      }
      case "verify": {
        if (!target) break;
        const verdict = await keys.verify({ ...users[2] }, target.secret, "");
        const row = await rowOf(target.keyId);
        const parent = row.parent_key_id ? await rowOf(row.parent_key_id) : undefined;
        if (dead(row, clock.now()) || (parent && dead(parent, clock.now()))) expect(verdict.result, "a dead key verified").not.toBe("valid");
        break;
      }
    }
    await checkInvariants();
  }

  async function checkInvariants(): Promise<void> {
    const now = clock.now();
    const rows = await ts.app.database.db.selectFrom("api_key").selectAll().where("project_id", "=", projectId).execute();
    const byId = new Map(rows.map((r) => [r.key_id, r]));
    for (const r of rows) {
      if (r.rate_limit_rps !== null) {
        expect(r.rate_limit_rps, "override above the plan").toBeLessThanOrEqual(PLAN_RATE.requestsPerSecond);
        expect(r.rate_limit_burst ?? r.rate_limit_rps, "burst above the plan").toBeLessThanOrEqual(PLAN_RATE.burst);
      }
      if (r.kind !== "scoped") continue;
      expect(r.expire_time, "a scoped key without expiry").not.toBeNull();
      expect(r.expire_time!, "a scoped key past its 24 h TTL").toBeLessThanOrEqual(r.create_time + DAY);
      expect(r.spend_cap_micros, "an uncapped scoped key").not.toBeNull();
      const p = r.parent_key_id ? byId.get(r.parent_key_id) : undefined;
      if (!p) continue;
      const parentScopes = p.scopes.split(",");
      for (const s of r.scopes.split(",").filter(Boolean)) expect(parentScopes, `scope ${s} beyond the parent`).toContain(s);
      if (p.expire_time !== null) expect(r.expire_time!, "outlives its parent").toBeLessThanOrEqual(p.expire_time);
      if (p.spend_cap_micros !== null) expect(r.spend_cap_micros!, "cap above the parent's").toBeLessThanOrEqual(p.spend_cap_micros);
      const pm = list(p.allowed_models);
      const cm = list(r.allowed_models);
      if (pm.length) {
        expect(cm.length, "every model while the parent has an allowlist").toBeGreaterThan(0);
        for (const m of cm) expect(covered(pm, m) || m === "-/-", `model ${m} beyond the parent's ${pm.join(",")}`).toBe(true);
      }
      if (p.rate_limit_rps !== null) {
        expect(r.rate_limit_rps, "no rate limit under a limited parent").not.toBeNull();
        expect(r.rate_limit_rps!, "rate above the parent's").toBeLessThanOrEqual(p.rate_limit_rps);
        expect(r.rate_limit_burst ?? r.rate_limit_rps!, "burst above the parent's").toBeLessThanOrEqual(p.rate_limit_burst ?? p.rate_limit_rps);
      }
      // Status reaches the child: a dead parent (revoked, expired, rotated past grace) means a dead child,
      // for metering (usage attributed to the key by a gateway) as for authentication.
      const metered = await keys.forMetering(ts.app.database.db, projectId, r.key_id);
      if (dead(p, now)) expect(metered.usable, "usage attributable to a child of a dead parent").toBe(false);
      for (const m of metered.allowedModels) expect(covered(pm, m) || m === "-/-", `metering model ${m} beyond the parent's`).toBe(true);
      const secret = secrets.find((s) => s.keyId === r.key_id)?.secret;
      if (!secret) continue;
      let principal: ApiKeyPrincipal | undefined;
      try {
        principal = (await keys.authenticate(secret, "127.0.0.1")) as ApiKeyPrincipal;
      } catch {
        principal = undefined;
      }
      if (dead(p, now)) expect(principal, "a child authenticated after its parent died").toBeUndefined();
      if (principal) {
        expect(principal.scope, "child principal above its parent").toBeLessThanOrEqual(rankOfScopes(p.scopes));
        for (const m of principal.allowedMethods) expect(list(r.allowed_methods)).toContain(m);
      }
    }
    // Environment is identity: the other prefix never verifies.
    for (const { secret } of secrets.slice(-3)) {
      const k = parseKey(secret)!;
      const swapped = formatKey(k.environment === "live" ? "test" : "live", k.keyId, k.secret);
      expect((await keys.verify({ ...users[2] }, swapped, "")).result, "an environment-swapped key verified").toBe("unknown");
    }
  }
}

describe("key authority never grows", () => {
  it("runs on the store DATABASE_URL names: PostgreSQL under `npm run test:pg`, else a SQLite file", () => {
    expect(ts.app.database.dialect).toBe(isPostgresUrl(process.env.DATABASE_URL ?? "") ? "postgres" : "sqlite");
  });

  it(`holds over random operation sequences by random callers (${RUNS} runs)`, async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), scenario), {
      numRuns: RUNS,
      seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined,
      endOnFailure: true,
    });
  }, 300_000);
});
