/**
 * Account domain logic: creating a project's account, reading and updating
 * it, and its members with their roles. Project scoping is decided before,
 * by the tenancy interceptor (src/auth/tenancy.ts), for every account method.
 */
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { roleName } from "../auth/principal.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { checkedChildIn, checkedProjectIn } from "../auth/tenancy.js";
import { alreadyExists, failedPrecondition, notFound, permissionDenied } from "../errors.js";
import type { Plan, Plans } from "../plans/plans.js";
import { type KeyInvalidation, sharedStateUnavailable } from "../cluster/key-invalidation.js";
import { type Coherence, ExactCache } from "../cluster/state-cache.js";
import { touch } from "../db/commit-hooks.js";
import type { Micros } from "../ledger/micros.js";
import * as repo from "./account-repository.js";
import { accountName, memberName } from "../names/names.js";

/** Whoever acts on an account: a user or a key, already authenticated. */
export interface Caller {
  subject: string;
  projectId: string;
  role: Role;
  /** Set for wallet-signed tokens, which never hold platform-wide powers. */
  wallet?: unknown;
  /** The principal's kind and, for keys, environment: a test key moves only sandbox credits (docs/test-mode.md). */
  kind?: string;
  environment?: "live" | "test";
  /** True for every caller of a test-mode project (docs/test-mode.md). */
  testProject?: boolean;
}

/** Counts other domains keep, shown on the account (keys in use, agents hired). */
export interface AccountCounters {
  activeApiKeys(db: Db, projectId: string): Promise<number>;
  activeHires(db: Db, projectId: string): Promise<number>;
  /** Brings the balance up to this instant before it is shown (metering returns expired holds). */
  settleBalance?(projectId: string): Promise<void>;
  /** When the project's earliest open hold expires (null: none), so a cached balance knows when to settle. */
  nextHoldExpiry?(projectId: string): Promise<number | null>;
}

/** Until keys and hires exist in the store, a project has none of either. */
export const noCounters: AccountCounters = {
  activeApiKeys: async () => 0,
  activeHires: async () => 0,
};

export interface AccountView {
  row: repo.AccountRow;
  plan: Plan;
  apiKeysUsed: number;
  agentSlotsUsed: number;
}

export interface AccountChanges {
  displayName?: string;
  billingEmail?: string;
}

/** Live or test mode: a test-mode project meters only its sandbox ledger (docs/test-mode.md). */
export type ProjectEnvironment = "live" | "test";

export { accountName, memberName };

const PLAN_CACHE_MS = 5_000;
/** A cached balance's longest life: a bound only, the cache is exact (src/cluster/state-cache.ts). */
const BALANCE_CACHE_MS = 30_000;

/** A project's balances as cached, and when its earliest open hold expires (then it must be settled first). */
interface BalanceState {
  live: Micros;
  test: Micros;
  holdDueAt: number | null;
}
/** The request id of development seeding's account create. */
const SEED_REQUEST = "formstate-dev-seed";
/** The cache lifetime while changes cannot reach other instances (Redis configured but unreachable). */
const DEGRADED_CACHE_MS = 1_000;

/** Cache entries as announced to other instances: a member's role, a project's plan. */
const roleKey = (projectId: string, userId: string) => `role\0${projectId}\0${userId}`;
const planKey = (projectId: string) => `plan\0${projectId}`;

export class Accounts {
  private readonly planCache = new Map<string, { plan: Plan; at: number }>();
  private readonly roleCache = new Map<string, { role: string | undefined; at: number }>();
  /** Balances by project, exact (state-cache.ts); none where other instances' changes cannot be heard. */
  private readonly balances?: ExactCache<BalanceState>;
  /** Projects known to have an account, with its environment: exact forever (fixed at creation, never deleted). */
  private readonly environmentCache = new Map<string, ProjectEnvironment>();

  constructor(
    private readonly database: Database,
    private readonly plans: Plans,
    private readonly clock: Clock,
    private readonly counters: AccountCounters = noCounters,
    /** Other instances' role and plan caches (several instances sharing a Redis). */
    private readonly invalidation?: KeyInvalidation,
    /** Keeps the balance cache exact; without it every balance is read from the store. */
    coherence?: Coherence,
  ) {
    void invalidation?.subscribe((ids) => this.drop(ids));
    if (coherence) {
      const balances = new ExactCache<BalanceState>(coherence, () => (coherence.exact() ? BALANCE_CACHE_MS : 0), 100_000);
      coherence.register((d) => balances.drop(d?.projects));
      this.balances = balances;
    }
  }

  /** Drops role and plan entries announced by another instance (all of them for `undefined`). */
  private drop(ids: string[] | undefined): void {
    if (ids === undefined) {
      this.roleCache.clear();
      this.planCache.clear();
      return;
    }
    for (const id of ids) {
      const [kind, projectId, userId] = id.split("\0");
      if (kind === "role") this.roleCache.delete(`${projectId}\0${userId}`);
      else if (kind === "plan") this.planCache.delete(projectId);
    }
  }

  private cacheMs(): number {
    return this.invalidation && !this.invalidation.connected() ? DEGRADED_CACHE_MS : PLAN_CACHE_MS;
  }

  /** A role change must reach every instance before it is acknowledged: refused up front when it cannot. */
  private assertCanAnnounce(): void {
    if (this.invalidation && !this.invalidation.connected()) throw sharedStateUnavailable("member not changed");
  }

  /**
   * Creates the caller's project account with the caller as its first admin.
   * A retry with the same request_id by the same caller returns the account.
   */
  async create(caller: Caller, changes: AccountChanges, requestId: string, environment: ProjectEnvironment = "live"): Promise<AccountView> {
    const now = this.clock.now();
    const row = await this.database.transaction(async (tx) => {
      const existing = await repo.findAccount(tx, caller.projectId);
      if (existing) {
        // A retry answers the first create; the same request_id asking for the other mode is another create.
        if (requestId !== "" && existing.create_request_id === requestId && existing.created_by === caller.subject && existing.environment === environment) return existing;
        throw alreadyExists(`account "${accountName(caller.projectId)}"`);
      }
      touch(tx, { projects: [caller.projectId] });
      await repo.insertAccount(tx, {
        project_id: caller.projectId,
        display_name: changes.displayName ?? "",
        billing_email: changes.billingEmail ?? "",
        plan_tier: "free",
        subscription_status: "none",
        credit_balance_micros: 0,
        environment,
        created_by: caller.subject,
        create_request_id: requestId === "" ? null : requestId,
        create_time: now,
        update_time: now,
      });
      await repo.insertMember(tx, { project_id: caller.projectId, user_id: caller.subject, role: "admin", create_time: now, update_time: now });
      this.roleCache.delete(`${caller.projectId}\0${caller.subject}`);
      return (await repo.findAccount(tx, caller.projectId))!;
    });
    return this.view(this.database.db, row);
  }

  /** Whether the project has an account (no tenancy check: the caller's project was checked already). */
  async exists(projectId: string): Promise<boolean> {
    return (await repo.findAccount(this.database.db, projectId)) !== undefined;
  }

  async get(caller: Caller, name: string): Promise<AccountView> {
    const projectId = this.ownProject(caller, name);
    await this.counters.settleBalance?.(projectId);
    return this.view(this.database.db, await this.require(this.database.db, projectId));
  }

  async update(caller: Caller, name: string, changes: AccountChanges): Promise<AccountView> {
    const projectId = this.ownProject(caller, name);
    const row = await this.database.transaction(async (tx) => {
      await this.require(tx, projectId);
      await repo.updateAccount(tx, projectId, {
        ...(changes.displayName !== undefined && { display_name: changes.displayName }),
        ...(changes.billingEmail !== undefined && { billing_email: changes.billingEmail }),
        update_time: this.clock.now(),
      });
      return (await repo.findAccount(tx, projectId))!;
    });
    return this.view(this.database.db, row);
  }

  async listMembers(caller: Caller, parent: string, requestedSize: number, pageToken: string) {
    const projectId = this.ownProject(caller, parent);
    await this.require(this.database.db, projectId);
    const size = pageSize(requestedSize);
    const after = decodePageToken(pageToken, ["number", "string"]) as [number, string] | undefined;
    const rows = await repo.listMembers(this.database.db, projectId, size + 1, after);
    return pageOf(rows, size, (r) => [r.create_time, r.user_id]);
  }

  async addMember(caller: Caller, parent: string, userId: string, role: Role): Promise<repo.MemberRow> {
    const projectId = this.ownProject(caller, parent);
    if (role > caller.role) throw permissionDenied(`a ${roleName(caller.role)} cannot add a member with role ${roleName(role)}`);
    const now = this.clock.now();
    const added = await this.database.transaction(async (tx) => {
      await this.require(tx, projectId);
      if (await repo.findMember(tx, projectId, userId)) throw alreadyExists(`member "${memberName(projectId, userId)}"`);
      const row = { project_id: projectId, user_id: userId, role: roleName(role), create_time: now, update_time: now };
      await repo.insertMember(tx, row);
      this.roleCache.delete(`${projectId}\0${userId}`);
      return row;
    });
    // Granting: another instance that still says "not a member" only refuses for a moment.
    await this.invalidation?.publish([roleKey(projectId, userId)]);
    return added;
  }

  async updateMemberRole(caller: Caller, name: string, role: Role): Promise<repo.MemberRow> {
    const { projectId, userId } = this.ownMember(caller, name);
    this.assertCanAnnounce();
    const updated = await this.database.transaction(async (tx) => {
      const member = await repo.findMember(tx, projectId, userId);
      if (!member) throw notFound(`member "${name}"`);
      const newRole = roleName(role);
      if (member.role === "admin" && newRole !== "admin" && (await repo.countAdmins(tx, projectId)) === 1) {
        throw failedPrecondition("the last admin of an account cannot be demoted; make another member admin first", "LAST_ADMIN");
      }
      await repo.updateMemberRole(tx, projectId, userId, newRole, this.clock.now());
      this.roleCache.delete(`${projectId}\0${userId}`);
      return (await repo.findMember(tx, projectId, userId))!;
    });
    await this.invalidation?.publishRequired([roleKey(projectId, userId)]);
    return updated;
  }

  async removeMember(caller: Caller, name: string): Promise<void> {
    const { projectId, userId } = this.ownMember(caller, name);
    this.assertCanAnnounce();
    await this.database.transaction(async (tx) => {
      const member = await repo.findMember(tx, projectId, userId);
      if (!member) throw notFound(`member "${name}"`);
      if (member.role === "admin" && (await repo.countAdmins(tx, projectId)) === 1) {
        throw failedPrecondition("the last admin of an account cannot be removed; make another member admin first", "LAST_ADMIN");
      }
      await repo.deleteMember(tx, projectId, userId);
      this.roleCache.delete(`${projectId}\0${userId}`);
    });
    await this.invalidation?.publishRequired([roleKey(projectId, userId)]);
  }

  /**
   * The project's plan, cached briefly: it is read on every call (rate
   * limits) and changes rarely; billing invalidates it when it does.
   */
  async planOf(projectId: string): Promise<Plan> {
    const now = this.clock.now();
    const hit = this.planCache.get(projectId);
    if (hit && now - hit.at < this.cacheMs()) return hit.plan;
    const row = await repo.findAccount(this.database.db, projectId);
    const plan = this.plans.byId(row?.plan_tier ?? "free");
    if (this.planCache.size > 100_000) this.planCache.clear();
    this.planCache.set(projectId, { plan, at: now });
    return plan;
  }

  /**
   * Drops the project's plan here and, best effort, on every other instance
   * (billing calls this after a subscription change; without Redis the other
   * instances' entries expire within DEGRADED_CACHE_MS).
   */
  invalidatePlan(projectId: string): void {
    this.planCache.delete(projectId);
    void this.invalidation?.publish([planKey(projectId)]);
  }

  /** The project's credit balance in micro-USD (0 without an account): live, or the test-mode sandbox's. */
  async creditBalance(projectId: string, environment: "live" | "test" = "live", since?: number): Promise<Micros> {
    const s = await this.balanceState(projectId, since);
    return environment === "test" ? s.test : s.live;
  }

  /**
   * The project's balances as of now: from the exact cache while no hold of
   * the project has expired since it was loaded (an expired hold is returned
   * first, a write that drops the entry), else settled and read.
   */
  private async balanceState(projectId: string, since?: number): Promise<BalanceState> {
    const now = this.clock.now();
    const cache = this.balances;
    if (!cache) return this.loadBalance(projectId, false);
    let s = (await cache.get(projectId, now, this.loadHeldBalance, since))!;
    if (s.holdDueAt !== null && s.holdDueAt <= now) {
      cache.drop([projectId]);
      s = (await cache.get(projectId, now, this.loadHeldBalance, since))!;
    }
    return s;
  }

  /** The cache's load of a project's balance (one function, not a closure per call). */
  private readonly loadHeldBalance = (projectId: string) => this.loadBalance(projectId, true);

  private async loadBalance(projectId: string, withHolds: boolean): Promise<BalanceState> {
    await this.counters.settleBalance?.(projectId);
    const row = await repo.findAccount(this.database.db, projectId);
    return {
      live: row?.credit_balance_micros ?? 0,
      test: row?.test_credit_balance_micros ?? 0,
      holdDueAt: withHolds && this.counters.nextHoldExpiry ? await this.counters.nextHoldExpiry(projectId) : null,
    };
  }

  /**
   * The project's environment: `test` for a test-mode project, `live`
   * otherwise (and while it has no account). Read on every authenticated
   * call; an account's environment never changes and accounts are never
   * deleted, so a found one is cached for good. A project without an account
   * is read again each time: it may be created in test mode at any moment.
   */
  async environmentOf(projectId: string): Promise<ProjectEnvironment> {
    const hit = this.environmentCache.get(projectId);
    if (hit) return hit;
    const row = await this.database.db.selectFrom("account").select("environment").where("project_id", "=", projectId).executeTakeFirst();
    if (!row) return "live";
    const env: ProjectEnvironment = row.environment === "test" ? "test" : "live";
    if (this.environmentCache.size > 100_000) this.environmentCache.clear();
    this.environmentCache.set(projectId, env);
    return env;
  }

  /**
   * A user's role from the members table, if they are a member. Read on every
   * call of a token without a role claim, so cached briefly; member changes in
   * this process drop the entry at once.
   */
  async memberRole(projectId: string, userId: string): Promise<string | undefined> {
    const key = `${projectId}\0${userId}`;
    const now = this.clock.now();
    const hit = this.roleCache.get(key);
    if (hit && now - hit.at < this.cacheMs()) return hit.role;
    const role = (await repo.findMember(this.database.db, projectId, userId))?.role;
    if (this.roleCache.size > 100_000) this.roleCache.clear();
    this.roleCache.set(key, { role, at: now });
    return role;
  }

  /**
   * Creates an account with `adminSubject` as admin unless it exists
   * (development seeding). Idempotent under concurrency: instances starting
   * together all succeed, whoever writes first (the seed's fixed request id
   * makes the loser's create answer the winner's account).
   */
  async ensure(projectId: string, adminSubject: string, displayName: string): Promise<void> {
    const existing = await repo.findAccount(this.database.db, projectId);
    if (existing) return;
    try {
      await this.create({ subject: adminSubject, projectId, role: Role.ADMIN }, { displayName }, SEED_REQUEST);
    } catch (err) {
      // Created meanwhile by someone else (another request id): it exists, which is all seeding wants.
      if (!(await repo.findAccount(this.database.db, projectId))) throw err;
    }
  }

  /** The project of a name the tenancy interceptor checked is the caller's. */
  private ownProject(_caller: Caller, name: string): string {
    return checkedProjectIn(name);
  }

  private ownMember(caller: Caller, name: string): { projectId: string; userId: string } {
    const { project: projectId, id } = checkedChildIn(name, "members");
    return { projectId, userId: id };
  }

  private async require(db: Db, projectId: string): Promise<repo.AccountRow> {
    const row = await repo.findAccount(db, projectId);
    if (!row) throw notFound(`account "${accountName(projectId)}"`);
    return row;
  }

  private async view(db: Db, row: repo.AccountRow): Promise<AccountView> {
    const [apiKeysUsed, agentSlotsUsed] = await Promise.all([
      this.counters.activeApiKeys(db, row.project_id),
      this.counters.activeHires(db, row.project_id),
    ]);
    return { row, plan: this.plans.byId(row.plan_tier), apiKeysUsed, agentSlotsUsed };
  }
}

