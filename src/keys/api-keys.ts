/**
 * API key domain logic: the lifecycle of standard and scoped keys, their
 * audit log, verification for internal services, and authentication of a
 * presented key on the hot path (cached, no database read per call).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { policyOf } from "../auth/access-policy.js";
import {
  type ApiKeyPrincipal,
  type Principal,
  roleForScope,
  roleName,
  scopeForRole,
  scopeName,
  scopeNames,
} from "../auth/principal.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { prepared } from "../db/prepared.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { checkedChildIn, checkedProjectIn } from "../auth/tenancy.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied, unauthenticated } from "../errors.js";
import type { Logger } from "../logger.js";
import { planLimitError } from "../plans/plan-limit-error.js";
import type { Plan, Plans } from "../plans/plans.js";
import { newId } from "../ids.js";
import { type KeyInvalidation, sharedStateUnavailable } from "../cluster/key-invalidation.js";
import { Coherence, ExactCache } from "../cluster/state-cache.js";
import { touch } from "../db/commit-hooks.js";
import { type KeyEnvironment, generateKey, parseKey, secretMatches } from "./key-format.js";
import { normalizeIp } from "./ip-allowlist.js";
import {
  type EffectiveKey,
  type KeyChanges,
  type KeyStatus,
  assertMayGrant,
  assertMayManage,
  assertNarrowing,
  assertNotScopedCaller,
  assertOverrideWithin,
  effectiveKey,
  grantLimit,
  narrowedChild,
  planBound,
  presentedVerdict,
  statusOf,
} from "./key-authority.js";
import { patternCovered } from "./model-patterns.js";
import * as repo from "./api-key-repository.js";
import type { ApiKeyRow } from "./api-key-repository.js";
import { keyName } from "../names/names.js";

/** The one message for an unknown key, a wrong secret and a bad checksum: a prober learns nothing. */
export const INVALID_KEY = "invalid API key";

/** Methods a key can be limited to, by full path. */
export type MethodIndex = Map<string, import("@bufbuild/protobuf").DescMethod>;

export interface KeySettings {
  displayName: string;
  scopes: Scope[];
  /** Unset: the project's (test in a test-mode project, else live). */
  environment?: KeyEnvironment;
  expireTime: number | null;
  rateLimit: { requestsPerSecond: number; burst: number } | null;
  spendCapMicros: number | null;
  allowedCidrs: string[];
  allowedModels: string[];
}

export type { KeyStatus } from "./key-authority.js";
export { statusOf } from "./key-authority.js";

/** Callers that manage keys: users and standard keys. */
export type KeyCaller = Exclude<Principal, { kind: "anonymous" }>;

export interface ApiKeysDeps {
  database: Database;
  plans: Plans;
  clock: Clock;
  log: Logger;
  methods: MethodIndex;
  /** The project's current plan. */
  planOf(projectId: string): Promise<Plan>;
  /** The project's environment: a test-mode project holds only test keys (docs/test-mode.md). Live when absent. */
  projectEnvironment?(projectId: string): Promise<"live" | "test">;
  /** Other instances' caches, told about revokes, rotations and updates (several instances sharing a Redis). */
  invalidation?: KeyInvalidation;
  /** Keeps the key cache exact (src/cluster/state-cache.ts); without it, this instance's changes only. */
  coherence?: Coherence;
}


export { keyName };
export const scopesOf = (row: ApiKeyRow): Scope[] => row.scopes.split(",").filter(Boolean).map((s) => scopeNames[s]);
export const maxScope = (scopes: Scope[]): Scope => scopes.reduce((a, b) => (b > a ? b : a), Scope.UNSPECIFIED);
export const listOf = (json: string): string[] => JSON.parse(json) as string[];

const CACHE_TTL_MS = 30_000;
/** The cache lifetime while invalidations cannot reach other instances (Redis configured but unreachable). */
export const DEGRADED_CACHE_TTL_MS = 2_000;
const CACHE_MAX = 50_000;
const REPLAY_TTL_MS = 10 * 60_000;
const LAST_USED_FLUSH_MS = 15_000;
const RATE_LIMIT_EVENT_EVERY_MS = 60_000;

export class ApiKeys {
  /**
   * Key rows by key id, exact (state-cache.ts): dropped after every commit that changes one. Their
   * spent_micros is NOT kept current (spend moves on every usage and would evict the row authentication
   * reads on every call): spend has its own cache, `spent`.
   */
  private readonly cache: ExactCache<ApiKeyRow>;
  /** spent_micros by key id, exact likewise: dropped after every commit that moves it. */
  private readonly spent: ExactCache<number>;
  private readonly coherence: Coherence;
  /** Coalesced last-used times, written every LAST_USED_FLUSH_MS. */
  private readonly lastUsed = new Map<string, number>();
  private readonly seenIps = new Map<string, Set<string>>();
  private readonly rateLimitedAt = new Map<string, number>();
  /**
   * Answers of recent creates by request id, secret included, kept in this
   * process's memory only (never in the database) so a retry gets the secret.
   */
  private readonly replays = new Map<string, { at: number; result: { row: ApiKeyRow; secret: string } }>();
  private flushTimer?: NodeJS.Timeout;

  constructor(private readonly deps: ApiKeysDeps) {
    this.coherence = deps.coherence ?? new Coherence(deps.database, deps.log);
    this.cache = new ExactCache<ApiKeyRow>(this.coherence, () => this.cacheTtl(), CACHE_MAX);
    this.spent = new ExactCache<number>(this.coherence, () => (this.coherence.exact() ? CACHE_TTL_MS : 0), CACHE_MAX);
    this.coherence.register((d) => {
      this.cache.drop(d?.keys);
      // A key changed by other means (rotation, revoke) may have had its spend reset too.
      this.spent.drop(d && [...d.spend, ...d.keys]);
    });
    void deps.invalidation?.subscribe((ids) => this.drop(ids));
  }

  /** Starts the coalesced last-used writer. */
  start(): void {
    this.flushTimer ??= setInterval(() => void this.flush(), LAST_USED_FLUSH_MS);
    this.flushTimer.unref();
  }

  /** Writes pending last-used times and stops the writer. */
  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.flushTimer = undefined;
    await this.flush();
  }

  async flush(): Promise<void> {
    if (this.lastUsed.size === 0) return;
    const batch = new Map(this.lastUsed);
    this.lastUsed.clear();
    try {
      await this.deps.database.transaction((tx) => repo.touchKeys(tx, batch));
    } catch (err) {
      this.deps.log.warn({ err }, "could not record key last-used times");
    }
  }

  /**
   * Drops cached keys here and in every other instance so the next call
   * anywhere re-reads them (revoke, rotate, update); resolves once the others
   * have dropped them too (bounded wait). UNAVAILABLE (SHARED_STATE_UNAVAILABLE)
   * when Redis is configured but the message cannot be sent: the change is
   * then not acknowledged as effective everywhere.
   */
  async invalidate(keyIds: Iterable<string>): Promise<void> {
    const ids = [...keyIds];
    this.drop(ids);
    await this.deps.invalidation?.publishRequired(ids);
  }

  /**
   * Refuses, before anything is written, a change other instances could not
   * be told about (Redis configured but unreachable from this instance).
   */
  private assertCanAnnounce(what: string): void {
    const inv = this.deps.invalidation;
    if (inv && !inv.connected()) throw sharedStateUnavailable(`API key not ${what}`);
  }

  /** Drops keys from this instance's cache only (all of them when `keyIds` is undefined). */
  private drop(keyIds: string[] | undefined): void {
    this.cache.drop(keyIds);
  }

  /** How long a cached key is trusted: short while other instances' changes may not reach this one. */
  private cacheTtl(): number {
    const inv = this.deps.invalidation;
    return inv && !inv.connected() ? DEGRADED_CACHE_TTL_MS : CACHE_TTL_MS;
  }

  // ---- authentication (hot path) ----

  /**
   * Authenticates a presented key. Unknown key, wrong secret and bad checksum
   * fail alike; a revoked or expired key says so (only after the secret matched).
   */
  async authenticate(presented: string, clientIp: string, since?: number): Promise<ApiKeyPrincipal> {
    const parsed = parseKey(presented);
    if (!parsed) throw unauthenticated(INVALID_KEY, "API_KEY_INVALID");
    const now = this.deps.clock.now();
    const row = await this.load(parsed.keyId, now, since);
    if (!row || !secretMatches(parsed.secret, row.secret_hash)) throw unauthenticated(INVALID_KEY, "API_KEY_INVALID");
    const ip = normalizeIp(clientIp);
    const eff = await this.effective(row, now, since);
    const verdict = presentedVerdict(parsed, row, eff, ip);
    if (verdict === "unknown") throw unauthenticated(INVALID_KEY, "API_KEY_INVALID");
    if (verdict === "revoked") throw unauthenticated(eff.statusFrom === row ? "API key revoked" : "API key revoked: its parent key was revoked", "API_KEY_REVOKED");
    if (verdict === "expired") throw unauthenticated(expiredMessage(row, eff), "API_KEY_EXPIRED");
    if (verdict === "ip_not_allowed") throw permissionDenied(`API key may not be used from ${ip}`, "IP_NOT_ALLOWED");
    this.lastUsed.set(row.key_id, Math.floor(now / 60_000) * 60_000);
    if (ip) await this.noteIp(row, ip, now);
    const scope = maxScope(eff.scopes);
    return {
      kind: "api_key",
      keyId: row.key_id,
      subject: keyName(row.project_id, row.key_id),
      projectId: row.project_id,
      scope,
      role: roleForScope(scope),
      keyKind: row.kind === "scoped" ? "scoped" : "standard",
      allowedMethods: eff.methods,
      allowedModels: eff.models,
      rateLimit: eff.rateLimit ?? undefined,
      parentKeyId: row.parent_key_id ?? undefined,
      environment: row.environment === "test" ? "test" : "live",
    };
  }

  /**
   * The key met with its parent chain (ancestors read through the same
   * cache, so a parent's revoke, rotation or narrowing reaches its children
   * on their next call).
   */
  private async effective(row: ApiKeyRow, now: number, since: number | undefined, read?: (id: string) => Promise<ApiKeyRow | undefined>): Promise<EffectiveKey> {
    const chain: (ApiKeyRow | undefined)[] = [];
    for (let id = row.parent_key_id, depth = 0; id && depth < 4; depth++) {
      const parent = await (read ? read(id) : this.load(id, now, since));
      chain.push(parent && parent.project_id === row.project_id ? parent : undefined);
      id = parent?.parent_key_id ?? null;
    }
    return effectiveKey(row, chain, now);
  }

  /** A key row through the exact cache; `since`: the arrival stamp of the request it serves (state-cache.ts). */
  private load(keyId: string, now: number, since?: number): Promise<ApiKeyRow | undefined> {
    return this.cache.get(keyId, now, this.readRow, since);
  }

  private readonly readRow = (keyId: string) => repo.findKey(this.deps.database.db, keyId);
  private readonly readSpent = (keyId: string) => repo.spentOf(this.deps.database.db, keyId);
  /** The last row-with-spend made from each cached row object: the same row and spend give the same copy. */
  private readonly spentRows = new WeakMap<ApiKeyRow, ApiKeyRow>();

  /** The row with its current spend: from the spend cache where it is exact, else read fresh. */
  private async withSpend(row: ApiKeyRow, now: number, since?: number): Promise<ApiKeyRow> {
    if (!this.coherence.exact()) return (await repo.findKey(this.deps.database.db, row.key_id)) ?? row;
    const spent = await this.spent.get(row.key_id, now, this.readSpent, since);
    if (spent === undefined || spent === row.spent_micros) return row;
    const made = this.spentRows.get(row);
    if (made?.spent_micros === spent) return made;
    const copy = { ...row, spent_micros: spent };
    this.spentRows.set(row, copy);
    return copy;
  }


  /** Records a USED_FROM_NEW_IP event the first time a key is used from an address. */
  private async noteIp(row: ApiKeyRow, ip: string, now: number): Promise<void> {
    let seen = this.seenIps.get(row.key_id);
    if (!seen) {
      seen = new Set(await repo.knownIps(this.deps.database.db, row.key_id));
      this.seenIps.set(row.key_id, seen);
    }
    if (seen.has(ip)) return;
    seen.add(ip);
    await this.deps.database.transaction(async (tx) => {
      if (!(await repo.rememberIp(tx, row.key_id, ip, now))) return;
      // The first address a key is used from is not "new": only later ones are worth an alert.
      const first = (await repo.knownIps(tx, row.key_id)).length === 1;
      if (!first) await this.event(tx, row, "used_from_new_ip", { kind: "api_key", id: keyName(row.project_id, row.key_id) }, ip, { ip });
    });
  }

  /** Records a RATE_LIMITED event, at most once a minute per key. */
  async noteRateLimited(keyId: string, ip: string): Promise<void> {
    const now = this.deps.clock.now();
    const last = this.rateLimitedAt.get(keyId);
    if (last !== undefined && now - last < RATE_LIMIT_EVENT_EVERY_MS) return;
    this.rateLimitedAt.set(keyId, now);
    const row = await this.load(keyId, now);
    if (!row) return;
    await this.deps.database.transaction((tx) => this.event(tx, row, "rate_limited", { kind: "system", id: "rate-limiter" }, ip, {}));
  }

  // ---- management ----

  async create(caller: KeyCaller, parent: string, settings: KeySettings, requestId: string, ip: string): Promise<{ row: ApiKeyRow; secret: string }> {
    const projectId = this.ownProject(caller, parent);
    assertNotScopedCaller(caller);
    const replayKey = `${projectId}\0${caller.subject}\0${requestId}`;
    const now = this.deps.clock.now();
    if (requestId) {
      const replay = this.replays.get(replayKey);
      if (replay && now - replay.at < REPLAY_TTL_MS) return replay.result;
    }
    const plan = await this.deps.planOf(projectId);
    assertMayGrant(caller, settings.scopes, "api_key.scopes");
    assertOverrideWithin(...planBound(plan), settings.rateLimit, "api_key.rate_limit");
    const environment = await this.keyEnvironment(projectId, settings.environment);
    const generated = generateKey(environment);
    settings = { ...settings, environment };
    const result = await this.deps.database.transaction(async (tx) => {
      if (requestId && (await repo.findKeyByRequest(tx, projectId, caller.subject, requestId))) {
        throw new ConnectError(
          `a key was already created with request_id ${JSON.stringify(requestId)}; its secret cannot be shown again`,
          Code.AlreadyExists,
        );
      }
      const used = await repo.countLiveStandardKeys(tx, projectId, now);
      if (plan.apiKeyLimit !== null && used >= plan.apiKeyLimit) throw this.keyLimitError(plan, used);
      const row = this.newRow(caller, projectId, generated, settings, now, requestId || null);
      await repo.insertKey(tx, row);
      await this.event(tx, row, "created", actorOf(caller), ip, {});
      return { row, secret: generated.key };
    });
    if (requestId) this.remember(replayKey, result, now);
    return result;
  }

  async get(caller: KeyCaller, name: string): Promise<ApiKeyRow> {
    const { projectId, keyId } = this.ownKey(caller, name);
    return this.require(this.deps.database.db, projectId, keyId, name);
  }

  async list(caller: KeyCaller, parent: string, statuses: KeyStatus[], includeScoped: boolean, size: number, token: string) {
    const projectId = this.ownProject(caller, parent);
    const n = pageSize(size);
    const before = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
    const rows = await repo.listKeys(this.deps.database.db, projectId, { includeScoped, statuses, now: this.deps.clock.now() }, n + 1, before);
    return pageOf(rows, n, (r) => [r.create_time, r.key_id]);
  }

  async update(caller: KeyCaller, name: string, paths: string[], settings: KeySettings, ip: string): Promise<ApiKeyRow> {
    const { projectId, keyId } = this.ownKey(caller, name);
    assertNotScopedCaller(caller);
    this.assertCanAnnounce("updated");
    const plan = await this.deps.planOf(projectId);
    if (paths.includes("scopes")) assertMayGrant(caller, settings.scopes, "api_key.scopes");
    if (paths.includes("rate_limit")) assertOverrideWithin(...planBound(plan), settings.rateLimit, "api_key.rate_limit");
    const now = this.deps.clock.now();
    const { row, touched } = await this.deps.database.transaction(async (tx) => {
      const row = await this.require(tx, projectId, keyId, name);
      assertMayManage(caller, row, "update");
      const status = statusOf(row, now);
      if (status !== "active") throw failedPrecondition(`API key ${name} is ${status} and cannot be changed`, "API_KEY_NOT_ACTIVE");
      const changes: Parameters<typeof repo.updateKey>[2] & KeyChanges = { update_time: now };
      for (const path of paths) {
        if (path === "display_name") changes.display_name = settings.displayName;
        if (path === "scopes") changes.scopes = settings.scopes.map(scopeName).join(",");
        if (path === "expire_time") changes.expire_time = settings.expireTime;
        if (path === "rate_limit") {
          changes.rate_limit_rps = settings.rateLimit?.requestsPerSecond ?? null;
          changes.rate_limit_burst = settings.rateLimit?.burst ?? null;
        }
        if (path === "spend_cap_micros") changes.spend_cap_micros = settings.spendCapMicros;
        if (path === "allowed_cidrs") changes.allowed_cidrs = JSON.stringify(settings.allowedCidrs);
        if (path === "allowed_models") changes.allowed_models = JSON.stringify(settings.allowedModels);
      }
      if (row.kind === "scoped") {
        const parent = row.parent_key_id ? await repo.findKey(tx, row.parent_key_id) : undefined;
        assertNarrowing(row, parent, changes);
      }
      await repo.updateKey(tx, keyId, changes);
      const updated = (await repo.findKey(tx, keyId))!;
      await this.event(tx, updated, "updated", actorOf(caller), ip, { update_mask: paths.join(",") });
      const children = await this.narrowChildren(tx, updated, now);
      return { row: updated, touched: [keyId, ...children] };
    });
    await this.invalidate(touched);
    return row;
  }

  async revoke(caller: KeyCaller, name: string, reason: string, ip: string): Promise<ApiKeyRow> {
    const { projectId, keyId } = this.ownKey(caller, name);
    this.assertCanAnnounce("revoked");
    const now = this.deps.clock.now();
    const { row, revoked } = await this.deps.database.transaction(async (tx) => {
      const row = await this.require(tx, projectId, keyId, name);
      assertMayManage(caller, row, "revoke");
      // Already revoked: announce again (a retry after UNAVAILABLE must reach the other instances).
      if (row.status === "revoked") return { row, revoked: [keyId, ...(await repo.childKeyIds(tx, keyId))] };
      const revoked = await repo.revokeWithChildren(tx, keyId, now, reason);
      for (const id of revoked) {
        const r = (await repo.findKey(tx, id))!;
        await this.event(tx, r, "revoked", actorOf(caller), ip, id === keyId ? { reason } : { reason: `parent key ${name} revoked` });
      }
      return { row: (await repo.findKey(tx, keyId))!, revoked };
    });
    await this.invalidate(revoked);
    return row;
  }

  async rotate(caller: KeyCaller, name: string, graceMs: number, requestId: string, ip: string) {
    const { projectId, keyId } = this.ownKey(caller, name);
    assertNotScopedCaller(caller);
    this.assertCanAnnounce("rotated");
    const now = this.deps.clock.now();
    const replayKey = `${projectId}\0${caller.subject}\0rotate\0${requestId}`;
    if (requestId) {
      const replay = this.replays.get(replayKey);
      if (replay && now - replay.at < REPLAY_TTL_MS) return { ...replay.result, old: (await repo.findKey(this.deps.database.db, keyId))! };
    }
    const result = await this.deps.database.transaction(async (tx) => {
      const old = await this.require(tx, projectId, keyId, name);
      assertMayManage(caller, old, "rotate");
      const status = statusOf(old, now);
      if (old.kind !== "standard") throw failedPrecondition("scoped keys cannot be rotated: mint a new one", "API_KEY_SCOPED");
      if (status !== "active") throw failedPrecondition(`API key ${name} is ${status} and cannot be rotated`, "API_KEY_NOT_ACTIVE");
      const generated = generateKey(old.environment as KeyEnvironment);
      const row: ApiKeyRow = {
        ...old,
        key_id: generated.keyId,
        secret_hash: generated.secretHash,
        status: "active",
        spent_micros: 0,
        replaced_by: null,
        create_request_id: null,
        created_by_kind: caller.kind,
        created_by: caller.subject,
        last_used_time: null,
        revoke_time: null,
        revoke_reason: null,
        create_time: now,
        update_time: now,
      };
      await repo.insertKey(tx, row);
      const graceEnd = old.expire_time === null ? now + graceMs : Math.min(old.expire_time, now + graceMs);
      await repo.updateKey(tx, keyId, { status: "rotated", expire_time: graceEnd, replaced_by: generated.keyId, update_time: now });
      const updatedOld = (await repo.findKey(tx, keyId))!;
      await this.event(tx, updatedOld, "rotated", actorOf(caller), ip, { replaced_by: keyName(projectId, generated.keyId), grace_ms: String(graceMs) });
      await this.event(tx, row, "created", actorOf(caller), ip, { rotated_from: name });
      // Children stay with the old key and end with its grace period.
      const children = await this.narrowChildren(tx, updatedOld, now);
      return { row, secret: generated.key, old: updatedOld, touched: [keyId, ...children] };
    });
    if (requestId) this.remember(replayKey, { row: result.row, secret: result.secret }, now);
    // Redis lost between the check above and now: the new secret exists only in this answer, so it is
    // answered (the old key is valid through its grace anyway); other caches expire on their own.
    await this.invalidate(result.touched).catch((err: unknown) => this.deps.log.warn({ err, keyId }, "rotation not announced to other instances"));
    return result;
  }

  /**
   * The environment of a new key: the one asked for, else the project's. A
   * test-mode project holds only test keys: a live one is FAILED_PRECONDITION.
   */
  private async keyEnvironment(projectId: string, asked: KeyEnvironment | undefined): Promise<KeyEnvironment> {
    const project = (await this.deps.projectEnvironment?.(projectId)) ?? "live";
    if (project === "test" && asked === "live") {
      throw failedPrecondition(`project "${projectId}" is a test-mode project: it can hold only fs_test_ keys; create the key with environment KEY_ENVIRONMENT_TEST or leave it unspecified (docs/test-mode.md)`, "TEST_MODE_PROJECT");
    }
    return asked ?? project;
  }

  async createScoped(
    caller: KeyCaller,
    parent: string,
    input: { parentKey: string; ttlMs: number; spendCapMicros: number; allowedMethods: string[]; allowedModels: string[]; displayName: string },
    requestId: string,
    ip: string,
  ): Promise<{ row: ApiKeyRow; secret: string }> {
    const projectId = this.ownProject(caller, parent);
    assertNotScopedCaller(caller, "mint scoped keys");
    const now = this.deps.clock.now();
    const replayKey = `${projectId}\0${caller.subject}\0scoped\0${requestId}`;
    if (requestId) {
      const replay = this.replays.get(replayKey);
      if (replay && now - replay.at < REPLAY_TTL_MS) return replay.result;
    }
    const parentKeyId = input.parentKey ? this.ownKey(caller, input.parentKey).keyId : caller.kind === "api_key" ? caller.keyId : undefined;
    // Read before the transaction: it reads through the database, which a SQLite write transaction holds.
    const projectEnvironment = await this.keyEnvironment(projectId, undefined);
    const result = await this.deps.database.transaction(async (tx) => {
      let scopes: Scope[];
      let parentModels: string[] = [];
      let expire = now + input.ttlMs;
      let parentRow: ApiKeyRow | undefined;
      if (parentKeyId) {
        parentRow = await this.require(tx, projectId, parentKeyId, input.parentKey || keyName(projectId, parentKeyId));
        const status = statusOf(parentRow, now);
        if (parentRow.kind !== "standard") throw failedPrecondition("a scoped key cannot be a parent", "API_KEY_SCOPED");
        if (status !== "active") throw failedPrecondition(`parent key is ${status}`, "API_KEY_NOT_ACTIVE");
        scopes = scopesOf(parentRow);
        // Never more than the caller may grant, nor what the parent holds.
        const callerMax = grantLimit(caller);
        scopes = scopes.filter((s) => s <= callerMax);
        parentModels = listOf(parentRow.allowed_models);
        if (parentRow.expire_time !== null) expire = Math.min(expire, parentRow.expire_time);
        if (parentRow.spend_cap_micros !== null) {
          const remaining = parentRow.spend_cap_micros - parentRow.spent_micros;
          if (input.spendCapMicros > remaining) {
            throw invalidArgument("spend_cap_micros", `exceeds the parent key's remaining budget of ${remaining} micro-USD`);
          }
        }
      } else {
        scopes = [scopeForRole(caller.role)].filter((s) => s !== Scope.UNSPECIFIED);
      }
      const top = maxScope(scopes);
      for (const m of input.allowedMethods) {
        const method = this.deps.methods.get(m);
        if (!method) throw invalidArgument("allowed_methods", `${m} is not a Formstate method`);
        const policy = policyOf(method);
        if (!policy || policy.scope === Scope.UNSPECIFIED || policy.scope > top) {
          throw invalidArgument("allowed_methods", `${m} cannot be called with scope ${scopeName(top)}`);
        }
      }
      for (const p of input.allowedModels) {
        if (!patternCovered(parentModels, p)) throw invalidArgument("allowed_models", `${p} is outside the parent key's models`);
      }
      const keyEnvironment = (parentRow?.environment as KeyEnvironment | undefined) ?? projectEnvironment;
      const generated = generateKey(keyEnvironment);
      const row = this.newRow(
        caller,
        projectId,
        generated,
        {
          displayName: input.displayName,
          scopes,
          environment: keyEnvironment,
          expireTime: expire,
          rateLimit: parentRow?.rate_limit_rps ? { requestsPerSecond: parentRow.rate_limit_rps, burst: parentRow.rate_limit_burst ?? parentRow.rate_limit_rps } : null,
          spendCapMicros: input.spendCapMicros,
          allowedCidrs: parentRow ? listOf(parentRow.allowed_cidrs) : [],
          allowedModels: input.allowedModels.length ? input.allowedModels : parentModels,
        },
        now,
        requestId || null,
      );
      row.kind = "scoped";
      row.parent_key_id = parentKeyId ?? null;
      row.allowed_methods = JSON.stringify(input.allowedMethods);
      await repo.insertKey(tx, row);
      await this.event(tx, row, "created", actorOf(caller), ip, parentRow ? { parent_key: keyName(projectId, parentRow.key_id) } : {});
      if (parentRow) await this.event(tx, parentRow, "scoped_key_created", actorOf(caller), ip, { scoped_key: keyName(projectId, row.key_id) });
      return { row, secret: generated.key };
    });
    if (requestId) this.remember(replayKey, result, now);
    return result;
  }

  /**
   * Verification for internal services: a verdict, not an error, for bad keys. `since`: the arrival
   * stamp of the request it answers (state-cache.ts); unset, the cache checks afresh.
   */
  async verify(caller: KeyCaller, presented: string, clientIp: string, since?: number) {
    const parsed = parseKey(presented);
    if (!parsed) return { result: "malformed" as const };
    const now = this.deps.clock.now();
    let row = await this.load(parsed.keyId, now, since);
    if (!row || row.project_id !== caller.projectId || !secretMatches(parsed.secret, row.secret_hash)) return { result: "unknown" as const };
    let effective = await this.effective(row, now, since);
    // Spend moves on every recorded usage: a capped key's remaining spend comes from the spend cache
    // (exact: every commit that moves it drops it, state-cache.ts), or where that cannot be exact
    // (PostgreSQL without a connected Redis) from a fresh read, for the key and its ancestors alike.
    if (effective.spendCapMicros !== null) {
      row = await this.withSpend(row, now, since);
      effective = await this.effective(row, now, since, async (id) => {
        const parent = await this.load(id, now, since);
        return parent && this.withSpend(parent, now, since);
      });
    }
    const result = presentedVerdict(parsed, row, effective, clientIp ? normalizeIp(clientIp) : "");
    if (result === "unknown") return { result };
    return { result, row, effective };
  }

  async listEvents(caller: KeyCaller, parent: string, types: string[], size: number, token: string) {
    const { project: projectId, id } = checkedChildIn(parent, "apiKeys");
    const keyId = id === "-" ? undefined : id;
    if (keyId) await this.require(this.deps.database.db, projectId, keyId, parent);
    const n = pageSize(size);
    const before = decodePageToken(token, ["number"]) as [number] | undefined;
    const rows = await repo.listEvents(this.deps.database.db, projectId, keyId, types, n + 1, before?.[0]);
    return pageOf(rows, n, (r) => [r.seq]);
  }

  // ---- metering support (called by the usage domain inside its transaction) ----

  /**
   * A key of the project as metering sees it, or NOT_FOUND. Used for the
   * customer key a gateway attributes usage to.
   */
  async forMetering(tx: Db, projectId: string, keyId: string): Promise<{ keyId: string; allowedModels: string[]; usable: boolean; environment: "live" | "test" }> {
    const row = await repo.findKeyInProject(tx, projectId, keyId);
    if (!row) throw notFound(`API key "${keyName(projectId, keyId)}"`);
    // The effective key, as authentication sees it: a scoped key of a dead parent is not usable.
    const chain: (ApiKeyRow | undefined)[] = [];
    for (let id = row.parent_key_id, depth = 0; id && depth < 4; depth++) {
      const parent = await repo.findKeyInProject(tx, projectId, id);
      chain.push(parent);
      id = parent?.parent_key_id ?? null;
    }
    const { status, models } = effectiveKey(row, chain, this.deps.clock.now());
    return { keyId, allowedModels: models, usable: status === "active" || status === "rotated", environment: row.environment === "test" ? "test" : "live" };
  }

  /**
   * The first spend cap (the key's, then its parent's) that `amount` more
   * would exceed, if any. Inside the write transaction that then adds it.
   */
  async spendRefusal(tx: Db, keyId: string, amount: number): Promise<{ keyName: string; cap: number; spent: number } | undefined> {
    for (let id: string | null = keyId; id; ) {
      const row: ApiKeyRow | undefined = await repo.findKey(tx, id);
      if (!row) return undefined;
      if (row.spend_cap_micros !== null && row.spent_micros + amount > row.spend_cap_micros) {
        return { keyName: keyName(row.project_id, row.key_id), cap: row.spend_cap_micros, spent: row.spent_micros };
      }
      id = row.parent_key_id;
    }
    return undefined;
  }

  /** Adds spend (negative to give back) to a key and its parent. */
  async addSpend(tx: Db, keyId: string, amount: number): Promise<void> {
    if (amount === 0) return;
    for (let id: string | null = keyId; id; ) {
      touch(tx, { spend: [id] });
      const row: { parent_key_id: string | null } | undefined = await tx
        .updateTable("api_key")
        .set((eb) => ({ spent_micros: eb("spent_micros", "+", amount) }))
        .where("key_id", "=", id)
        .returning("parent_key_id")
        .executeTakeFirst();
      id = row?.parent_key_id ?? null;
    }
  }

  /**
   * A key and its parents as `spendRefusal` reads them (the key first), for a
   * set writer that checks caps in memory. Inside the write transaction.
   */
  async spendChain(tx: Db, keyId: string): Promise<Array<{ keyId: string; keyName: string; cap: number | null; spent: number }>> {
    const chain: Array<{ keyId: string; keyName: string; cap: number | null; spent: number }> = [];
    for (let id: string | null = keyId; id; ) {
      const row: ApiKeyRow | undefined = await repo.findKey(tx, id);
      if (!row) break;
      chain.push({ keyId: row.key_id, keyName: keyName(row.project_id, row.key_id), cap: row.spend_cap_micros, spent: Number(row.spent_micros) });
      id = row.parent_key_id;
    }
    return chain;
  }

  /** Adds spend to keys, one statement per key (`deltas` already holds each key's parents' share, as `spendChain` lists them). */
  async addSpends(tx: Db, deltas: Map<string, number>): Promise<void> {
    for (const [id, amount] of deltas) {
      if (amount === 0) continue;
      // As in `addSpend`: the key's cached spend is dropped after the commit (state-cache.ts).
      touch(tx, { spend: [id] });
      await addSpendQuery(tx, id, amount);
    }
  }

  /** Counts standard keys that hold a plan slot (for the account view). */
  countLive(db: Db, projectId: string): Promise<number> {
    return repo.countLiveStandardKeys(db, projectId, this.deps.clock.now());
  }

  // ---- helpers ----

  private newRow(
    caller: KeyCaller,
    projectId: string,
    generated: { keyId: string; secretHash: string },
    s: KeySettings,
    now: number,
    requestId: string | null,
  ): ApiKeyRow {
    return {
      key_id: generated.keyId,
      project_id: projectId,
      environment: s.environment ?? "live",
      kind: "standard",
      display_name: s.displayName,
      secret_hash: generated.secretHash,
      scopes: s.scopes.map(scopeName).join(","),
      status: "active",
      expire_time: s.expireTime,
      revoke_time: null,
      revoke_reason: null,
      rate_limit_rps: s.rateLimit?.requestsPerSecond ?? null,
      rate_limit_burst: s.rateLimit?.burst ?? null,
      spend_cap_micros: s.spendCapMicros,
      spent_micros: 0,
      allowed_cidrs: JSON.stringify(s.allowedCidrs),
      allowed_models: JSON.stringify(s.allowedModels),
      allowed_methods: "[]",
      parent_key_id: null,
      replaced_by: null,
      created_by_kind: caller.kind,
      created_by: caller.subject,
      creator_role: roleName(caller.role),
      create_request_id: requestId,
      last_used_time: null,
      create_time: now,
      update_time: now,
    };
  }

  private remember(key: string, result: { row: ApiKeyRow; secret: string }, now: number): void {
    this.replays.set(key, { at: now, result });
    for (const [k, v] of this.replays) {
      if (now - v.at < REPLAY_TTL_MS && this.replays.size <= 10_000) break;
      this.replays.delete(k);
    }
  }

  /** Narrows the stored state of a key's scoped children to what the key now is; returns their ids. */
  private async narrowChildren(tx: Db, parent: ApiKeyRow, now: number): Promise<string[]> {
    if (parent.kind !== "standard") return [];
    const ids: string[] = [];
    for (const id of await repo.childKeyIds(tx, parent.key_id)) {
      const child = await repo.findKey(tx, id);
      if (!child) continue;
      const changes = narrowedChild(child, parent);
      if (Object.keys(changes).length === 0) continue;
      await repo.updateKey(tx, id, { ...changes, update_time: now });
      ids.push(id);
    }
    return ids;
  }

  private keyLimitError(plan: Plan, used: number): ConnectError {
    return planLimitError(this.deps.plans, plan, used, {
      reason: LimitReason.API_KEY_LIMIT,
      code: Code.FailedPrecondition,
      limitOf: (p) => p.apiKeyLimit,
      noun: "API keys",
      usedVerb: "are in use",
      remedy: "revoke one",
    });
  }


  private async event(tx: Db, row: ApiKeyRow, type: string, actor: { kind: string; id: string }, ip: string, details: Record<string, string>): Promise<void> {
    await repo.insertEvent(tx, {
      event_id: newId(),
      project_id: row.project_id,
      key_id: row.key_id,
      type,
      actor_kind: actor.kind,
      actor: actor.id,
      actor_ip: normalizeIp(ip),
      details: JSON.stringify(details),
      create_time: this.deps.clock.now(),
    });
  }

  /** The project of a name the tenancy interceptor checked is the caller's (src/auth/tenancy.ts). */
  private ownProject(_caller: KeyCaller, name: string): string {
    return checkedProjectIn(name);
  }

  private ownKey(caller: KeyCaller, name: string): { projectId: string; keyId: string } {
    const { project: projectId, id } = checkedChildIn(name, "apiKeys");
    return { projectId, keyId: id };
  }

  private async require(db: Db, projectId: string, keyId: string, name: string): Promise<ApiKeyRow> {
    const row = await repo.findKeyInProject(db, projectId, keyId);
    if (!row) throw notFound(`API key "${name}"`);
    return row;
  }
}

function expiredMessage(row: ApiKeyRow, eff: EffectiveKey): string {
  if (eff.statusFrom !== row) return eff.statusFrom.status === "rotated" ? "API key expired: its parent key was rotated and the grace period ended" : "API key expired: its parent key expired";
  return row.status === "rotated" ? "API key expired: it was rotated and its grace period ended" : "API key expired";
}

function actorOf(caller: KeyCaller): { kind: string; id: string } {
  return { kind: caller.kind, id: caller.subject };
}


/** Prepared (src/db/prepared.ts): a set-based commit's spend update of one key. */
const addSpendQuery = prepared((tx: Db, keyId: string, amount: number) => tx.updateTable("api_key").set((eb) => ({ spent_micros: eb("spent_micros", "+", amount) })).where("key_id", "=", keyId));
