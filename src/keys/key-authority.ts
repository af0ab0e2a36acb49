/**
 * Key authority: the one place that decides what a caller may do to an API
 * key, and what a key is worth at any moment. Pure functions over rows; the
 * key domain (api-keys.ts) calls them for every key-mutating method, for
 * VerifyApiKey and for authentication.
 *
 * Rules (docs/api.md "Key authority"):
 * - Callers and keys have a rank: user < developer < admin. A user's rank is
 *   its role; a key's is the role its highest scope stands for (read = user,
 *   write = developer, admin = admin). A caller may update, rotate or revoke
 *   only keys of rank <= its own (PERMISSION_DENIED, KEY_ABOVE_CALLER), and
 *   grant only scopes up to its own rank.
 * - A scoped key manages nothing but itself: it may revoke itself
 *   (PERMISSION_DENIED, SCOPED_KEY_CALLER otherwise).
 * - A scoped key's effective state is the meet of its own and its parent
 *   chain's, at every check: scopes (intersection), models (intersection),
 *   spend (the tightest remaining budget), expiry (the earliest), rate limit
 *   (the lowest), client addresses (all must allow), status (a parent
 *   revoked, expired, or rotated past its grace ends the child).
 * - UpdateApiKey only narrows a scoped key: never past its own current state,
 *   its parent, or its 24 h TTL.
 * - Rate-limit overrides only lower the plan: requests/s and burst.
 * - Environment (live/test) is part of a key's identity: a key presented with
 *   the other environment's prefix is an unknown key.
 */
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { type Principal, roleForScope, roleName, scopeForRole, scopeName, scopeNames } from "../auth/principal.js";
import { invalidArgument, permissionDenied } from "../errors.js";
import type { Plan } from "../plans/plans.js";
import type { ApiKeyRow } from "./api-key-repository.js";
import { ipAllowed } from "./ip-allowlist.js";
import type { ParsedKey } from "./key-format.js";
import { patternCovered } from "./model-patterns.js";

/** The longest a scoped key may live, from its creation. */
export const MAX_SCOPED_TTL_MS = 24 * 3_600_000;

/** A model pattern no model id matches: the meet of two disjoint allowlists (an empty list would mean "any"). */
export const NO_MODEL = "-/-";

export type Caller = Exclude<Principal, { kind: "anonymous" }>;
export type KeyStatus = "active" | "revoked" | "rotated" | "expired";
export type RateLimit = { requestsPerSecond: number; burst: number };

/** Parsed scope lists by their stored text (a handful of distinct values: read, write, admin combined). */
const parsedScopes = new Map<string, readonly Scope[]>();

/** The scopes of a stored list, a new array each time (parsed once per distinct text: every call reads them). */
function scopesIn(csv: string): Scope[] {
  let parsed = parsedScopes.get(csv);
  if (!parsed) {
    parsed = csv.split(",").filter(Boolean).map((s) => scopeNames[s]);
    if (parsedScopes.size < 256) parsedScopes.set(csv, parsed);
  }
  return parsed.slice();
}

/** A stored JSON list; the usual empty one without JSON.parse. */
const listIn = (json: string): string[] => (json === "[]" ? [] : (JSON.parse(json) as string[]));
const top = (scopes: Scope[]): Scope => scopes.reduce((a, b) => (b > a ? b : a), Scope.UNSPECIFIED);

/** A key's derived status: expiry is a matter of time, not a stored state. */
export function statusOf(row: Pick<ApiKeyRow, "status" | "expire_time">, now: number): KeyStatus {
  if (row.status === "revoked") return "revoked";
  if (row.expire_time !== null && row.expire_time <= now) return "expired";
  return row.status === "rotated" ? "rotated" : "active";
}

/** A caller's rank: its role, or for a key the role its highest scope stands for. */
export function callerRank(caller: Caller): Role {
  return caller.kind === "user" ? caller.role : roleForScope(caller.scope);
}

/** A key's rank: the role its highest scope stands for. */
export function keyRank(scopes: Scope[]): Role {
  return roleForScope(top(scopes));
}

/** The highest scope a caller may grant. */
export function grantLimit(caller: Caller): Scope {
  return caller.kind === "user" ? scopeForRole(caller.role) : caller.scope;
}

const who = (caller: Caller) => (caller.kind === "user" ? `a ${roleName(caller.role)}` : `a key with scope ${scopeName(caller.scope)}`);

/** Key management (create, rotate, mint) is for users and standard keys only. */
export function assertNotScopedCaller(caller: Caller, what = "manage keys"): void {
  if (caller.kind === "api_key" && caller.keyKind === "scoped") throw permissionDenied(`scoped keys cannot ${what}`, "SCOPED_KEY_CALLER");
}

/**
 * Whether the caller may update, rotate or revoke this key (it is already
 * known to be in the caller's project). Throws PERMISSION_DENIED otherwise.
 */
export function assertMayManage(caller: Caller, row: ApiKeyRow, action: "update" | "rotate" | "revoke"): void {
  if (caller.kind === "api_key" && caller.keyKind === "scoped") {
    if (action === "revoke" && caller.keyId === row.key_id) return;
    throw permissionDenied(action === "revoke" ? "a scoped key may revoke only itself" : "scoped keys cannot manage keys", "SCOPED_KEY_CALLER");
  }
  const rank = keyRank(scopesIn(row.scopes));
  if (rank > callerRank(caller)) {
    throw permissionDenied(`${who(caller)} cannot ${action} a key of rank ${roleName(rank)} (scope ${scopeName(top(scopesIn(row.scopes)))})`, "KEY_ABOVE_CALLER");
  }
}

/** Scopes a caller may grant: none above its own rank. */
export function assertMayGrant(caller: Caller, scopes: Scope[], field: string): void {
  const limit = grantLimit(caller);
  for (const s of scopes) {
    if (s > limit) throw invalidArgument(field, `scope ${scopeName(s)} is above what ${who(caller)} may grant (${scopeName(limit)})`);
  }
}

/** A rate-limit override may only lower the plan's: requests per second and burst alike. */
export function assertOverrideWithin(bound: RateLimit, boundName: string, limit: RateLimit | null, field: string): void {
  if (!limit) return;
  if (limit.requestsPerSecond > bound.requestsPerSecond) {
    throw invalidArgument(field, `${limit.requestsPerSecond} requests per second is above ${boundName}'s ${bound.requestsPerSecond}`);
  }
  if (limit.burst > bound.burst) throw invalidArgument(field, `a burst of ${limit.burst} is above ${boundName}'s ${bound.burst}`);
}

export const planBound = (plan: Plan): [RateLimit, string] => [plan.rateLimit, `the ${plan.displayName} plan`];

// ---- the meet ----

/** The models both allowlists admit (prefix globs: two patterns either nest or are disjoint). Empty = any. */
export function meetModels(a: string[], b: string[]): string[] {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Set<string>();
  for (const p of a) for (const q of b) {
    if (patternCovered([q], p)) out.add(p);
    else if (patternCovered([p], q)) out.add(q);
  }
  return out.size ? [...out] : [NO_MODEL];
}

const minNullable = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
const rateOf = (r: ApiKeyRow): RateLimit | null =>
  r.rate_limit_rps === null ? null : { requestsPerSecond: r.rate_limit_rps, burst: r.rate_limit_burst ?? r.rate_limit_rps };
function meetRate(a: RateLimit | null, b: RateLimit | null): RateLimit | null {
  if (!a) return b;
  if (!b) return a;
  return { requestsPerSecond: Math.min(a.requestsPerSecond, b.requestsPerSecond), burst: Math.min(a.burst, b.burst) };
}

/** What a key is worth now: its own state met with every ancestor's. */
export interface EffectiveKey {
  status: KeyStatus;
  /** Which key made it not active (itself or an ancestor). */
  statusFrom: ApiKeyRow;
  scopes: Scope[];
  models: string[];
  methods: string[];
  expireTime: number | null;
  rateLimit: RateLimit | null;
  /** The tightest spend cap and what is left under it (null = uncapped). */
  spendCapMicros: number | null;
  remainingSpendMicros: number | null;
  /** Every list must allow the address. */
  cidrs: string[][];
}

/**
 * The meet of a key and its ancestors (`chain[0]` the parent, then its
 * parent...). A missing ancestor (deleted) counts as revoked.
 */
export function effectiveKey(row: ApiKeyRow, chain: (ApiKeyRow | undefined)[], now: number): EffectiveKey {
  const e: EffectiveKey = {
    status: statusOf(row, now),
    statusFrom: row,
    scopes: scopesIn(row.scopes),
    models: listIn(row.allowed_models),
    methods: listIn(row.allowed_methods),
    expireTime: row.expire_time,
    rateLimit: rateOf(row),
    spendCapMicros: row.spend_cap_micros,
    remainingSpendMicros: row.spend_cap_micros === null ? null : Math.max(0, row.spend_cap_micros - row.spent_micros),
    cidrs: [],
  };
  const ownCidrs = listIn(row.allowed_cidrs);
  if (ownCidrs.length) e.cidrs.push(ownCidrs);
  for (const p of chain) {
    if (!p) {
      if (e.status === "active" || e.status === "rotated") e.status = "revoked";
      break;
    }
    const ps = statusOf(p, now);
    // A parent in its rotation grace still vouches for its children; revoked or expired, it does not.
    if ((ps === "revoked" || ps === "expired") && (e.status === "active" || e.status === "rotated")) {
      e.status = ps;
      e.statusFrom = p;
    }
    const parentScopes = new Set(scopesIn(p.scopes));
    e.scopes = e.scopes.filter((s) => parentScopes.has(s));
    e.models = meetModels(e.models, listIn(p.allowed_models));
    e.expireTime = minNullable(e.expireTime, p.expire_time);
    e.rateLimit = meetRate(e.rateLimit, rateOf(p));
    e.spendCapMicros = minNullable(e.spendCapMicros, p.spend_cap_micros);
    const left = p.spend_cap_micros === null ? null : Math.max(0, p.spend_cap_micros - p.spent_micros);
    e.remainingSpendMicros = minNullable(e.remainingSpendMicros, left);
    const cidrs = listIn(p.allowed_cidrs);
    if (cidrs.length) e.cidrs.push(cidrs);
  }
  return e;
}

export type Verdict = "unknown" | "revoked" | "expired" | "ip_not_allowed" | "valid";

/**
 * The verdict on a presented key whose secret already matched `row`:
 * environment, status and address, all on the effective state.
 * Authentication and VerifyApiKey both answer from this.
 */
export function presentedVerdict(parsed: ParsedKey, row: ApiKeyRow, effective: EffectiveKey, ip: string): Verdict {
  if (row.environment !== parsed.environment || row.key_id !== parsed.keyId) return "unknown";
  if (effective.status === "revoked") return "revoked";
  if (effective.status === "expired") return "expired";
  if (ip && !effective.cidrs.every((l) => ipAllowed(l, ip))) return "ip_not_allowed";
  return "valid";
}

// ---- changes to a scoped key: only narrower ----

/** The fields UpdateApiKey may change, as they would be stored. */
export interface KeyChanges {
  scopes?: string;
  expire_time?: number | null;
  rate_limit_rps?: number | null;
  rate_limit_burst?: number | null;
  spend_cap_micros?: number | null;
  allowed_cidrs?: string;
  allowed_models?: string;
}

/**
 * Refuses any change that would make a scoped key more than it is now, more
 * than its parent, or longer-lived than its TTL allows. INVALID_ARGUMENT
 * naming the field.
 */
export function assertNarrowing(current: ApiKeyRow, parent: ApiKeyRow | undefined, c: KeyChanges): void {
  if (c.scopes !== undefined) {
    const now = new Set(scopesIn(current.scopes));
    const bad = scopesIn(c.scopes).find((s) => !now.has(s));
    if (bad !== undefined) throw invalidArgument("api_key.scopes", `a scoped key cannot gain scope ${scopeName(bad)}`);
  }
  if (c.expire_time !== undefined) {
    const limit = [current.expire_time, current.create_time + MAX_SCOPED_TTL_MS, parent?.expire_time ?? null].reduce(minNullable);
    if (c.expire_time === null || (limit !== null && c.expire_time > limit)) {
      throw invalidArgument("api_key.expire_time", `a scoped key must expire, no later than ${new Date(limit!).toISOString()} (its current expiry, its parent's, and its 24 h TTL)`);
    }
  }
  if (c.allowed_models !== undefined) {
    const proposed = listIn(c.allowed_models);
    const bounds = [listIn(current.allowed_models), parent ? listIn(parent.allowed_models) : []];
    for (const bound of bounds) {
      if (bound.length === 0) continue;
      if (proposed.length === 0) throw invalidArgument("api_key.allowed_models", "a scoped key with a model allowlist cannot be opened to every model");
      const bad = proposed.find((p) => !patternCovered(bound, p));
      if (bad) throw invalidArgument("api_key.allowed_models", `${bad} is outside the scoped key's current models or its parent's`);
    }
  }
  if (c.spend_cap_micros !== undefined) {
    const limit = minNullable(current.spend_cap_micros, parent?.spend_cap_micros === null || !parent ? null : current.spent_micros + Math.max(0, parent.spend_cap_micros! - parent.spent_micros));
    if (limit !== null && (c.spend_cap_micros === null || c.spend_cap_micros > limit)) {
      throw invalidArgument("api_key.spend_cap_micros", `a scoped key's spend cap can only be lowered (at most ${limit} micro-USD)`);
    }
  }
  if (c.rate_limit_rps !== undefined) {
    const proposed = c.rate_limit_rps === null ? null : { requestsPerSecond: c.rate_limit_rps, burst: c.rate_limit_burst ?? c.rate_limit_rps };
    const bound = meetRate(rateOf(current), parent ? rateOf(parent) : null);
    if (bound && !proposed) throw invalidArgument("api_key.rate_limit", "a scoped key's rate limit can only be lowered, not cleared");
    if (bound) assertOverrideWithin(bound, "the scoped key's current limit or its parent's", proposed, "api_key.rate_limit");
  }
  if (c.allowed_cidrs !== undefined) {
    const now = listIn(current.allowed_cidrs);
    const proposed = listIn(c.allowed_cidrs);
    if (now.length && (proposed.length === 0 || proposed.some((p) => !now.includes(p)))) {
      throw invalidArgument("api_key.allowed_cidrs", "a scoped key's address list can only lose entries");
    }
  }
}

/**
 * What a parent's new state leaves of a child: the stored child narrowed to
 * the meet, so a child is never more than its parent in what it stores
 * either. Returns only the fields that change.
 */
export function narrowedChild(child: ApiKeyRow, parent: ApiKeyRow): KeyChanges {
  const out: KeyChanges = {};
  const parentScopes = new Set(scopesIn(parent.scopes));
  const scopes = scopesIn(child.scopes).filter((s) => parentScopes.has(s));
  const csv = scopes.map(scopeName).join(",");
  if (csv !== child.scopes) out.scopes = csv;
  const expire = minNullable(child.expire_time, parent.expire_time);
  if (expire !== child.expire_time) out.expire_time = expire;
  const models = JSON.stringify(meetModels(listIn(child.allowed_models), listIn(parent.allowed_models)));
  if (models !== child.allowed_models) out.allowed_models = models;
  const cap = minNullable(child.spend_cap_micros, parent.spend_cap_micros);
  if (cap !== child.spend_cap_micros) out.spend_cap_micros = cap;
  const rate = meetRate(rateOf(child), rateOf(parent));
  const current = rateOf(child);
  if (rate && (!current || rate.requestsPerSecond !== current.requestsPerSecond || rate.burst !== current.burst)) {
    out.rate_limit_rps = rate.requestsPerSecond;
    out.rate_limit_burst = rate.burst;
  }
  return out;
}
