/**
 * Sign-in sessions of every token kind: identity-provider JWTs (by `sid`, else
 * `jti`) and wallet tokens. A session is recorded the first time it is seen;
 * revoking one, or all of a subject's (a cut-off time: tokens issued before it
 * fail), takes effect on the next call. State is in the store; this process
 * caches it briefly and drops its own cache entries at once on revocation.
 */
import { createHash } from "node:crypto";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { AuthError } from "../auth/auth-error.js";
import type { CheckedProject, ChildRef } from "../auth/tenancy.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { notFound, permissionDenied } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Plan } from "../plans/plans.js";
import type { AuthSessionTable } from "./session-tables.js";
import type { Selectable } from "kysely";
import type { KeyInvalidation } from "../cluster/key-invalidation.js";
import { type BudgetRef, ensureBudget } from "../wallets/wallet-budgets.js";
import { sessionName } from "../names/names.js";

export type SessionRow = Selectable<AuthSessionTable>;
export type SessionKind = "idp" | "wallet";
export interface SessionView {
  row: SessionRow;
  budget?: { limit: number; spent: number };
}

/** A call's session, as the authenticator saw it. */
export interface SessionSeen {
  projectId: string;
  kind: SessionKind;
  subject: string;
  /** From sessionIdOf; undefined when the token names no session (only cut-offs apply then). */
  sessionId?: string;
  /** Epoch ms of the token's iat; undefined when it has none. */
  issuedAtMs?: number;
  /** Epoch ms of the token's exp. */
  expireTime?: number;
  /** A wallet token's budget: created with the session so listing shows it before any spend. */
  budget?: BudgetRef;
}

/** Who manages sessions: users their own, admins everyone's in the project. */
export interface SessionCaller {
  subject: string;
  projectId: string;
  role: Role;
}

export interface SessionsDeps {
  database: Database;
  clock: Clock;
  log: Logger;
  planOf(projectId: string): Promise<Plan>;
  /** How long this process trusts what it read of a session; default 1 s. Own revocations apply at once. */
  cacheMs?: number;
  /** Tells other instances to drop what they cached (Redis pub/sub), so revocations apply there at once too. */
  invalidation?: KeyInvalidation;
}

/** A session's id: derived, so raw `sid` values (any characters) never become resource names. */
export function sessionIdOf(kind: SessionKind, scope: string, key: string): string {
  return `${kind === "idp" ? "i" : "w"}${createHash("sha256").update(`${kind}\n${scope}\n${key}`).digest("hex").slice(0, 31)}`;
}

export { sessionName };

const LAST_SEEN_WRITE_MS = 30_000;

export class Sessions {
  private readonly cutoffs = new Map<string, { before: number; at: number }>();
  private readonly known = new Map<string, { revoked: boolean; at: number; seenWritten: number }>();
  private readonly cacheMs: number;

  constructor(private readonly deps: SessionsDeps) {
    this.cacheMs = deps.cacheMs ?? 1_000;
  }

  /** Throws AuthError SESSION_REVOKED when the session or all of the subject's sessions were revoked. */
  async admit(s: SessionSeen): Promise<void> {
    const now = this.deps.clock.now();
    const before = await this.cutoffOf(s.projectId, s.subject, now);
    // iat has one-second precision: a token from the very second of the revocation is refused too
    // (signing in again a second later works), so no token from before it slips through.
    if (before > 0 && (s.issuedAtMs === undefined || s.issuedAtMs <= before)) {
      throw new AuthError("SESSION_REVOKED", `the sessions of ${s.subject} were revoked at ${new Date(before).toISOString()}; sign in again`);
    }
    if (s.sessionId === undefined) return;
    let entry = this.known.get(s.sessionId);
    if (!entry || now - entry.at >= this.cacheMs) {
      const row = await this.deps.database.db.selectFrom("auth_session").select(["revoke_time", "last_seen_time"]).where("session_id", "=", s.sessionId).executeTakeFirst();
      if (row) entry = { revoked: row.revoke_time !== null, at: now, seenWritten: entry?.seenWritten ?? row.last_seen_time };
      else entry = { revoked: await this.open(s, now), at: now, seenWritten: now };
      this.remember(s.sessionId, entry);
    }
    if (entry.revoked) throw new AuthError("SESSION_REVOKED", "this session was revoked; sign in again");
    if (now - entry.seenWritten >= LAST_SEEN_WRITE_MS) {
      entry.seenWritten = now;
      await this.deps.database.db
        .updateTable("auth_session")
        .set({ last_seen_time: now, expire_time: s.expireTime ?? null })
        .where("session_id", "=", s.sessionId)
        .execute();
    }
  }

  /** Records a new session and applies the plan's session limit; returns whether it is already revoked. */
  private async open(s: SessionSeen, now: number): Promise<boolean> {
    const limit = (await this.deps.planOf(s.projectId)).sessionLimit ?? null;
    const revoked = await this.deps.database.transaction(async (tx) => {
      await tx
        .insertInto("auth_session")
        .values({ session_id: s.sessionId!, project_id: s.projectId, kind: s.kind, subject: s.subject, create_time: now, last_seen_time: now, expire_time: s.expireTime ?? null, revoke_time: null, revoke_reason: null, budget_id: s.budget?.id ?? null })
        .onConflict((oc) => oc.column("session_id").doNothing())
        .execute();
      if (s.budget) await ensureBudget(tx, s.budget, now);
      if (limit === null) return [];
      const active = await this.activeOf(tx, s.projectId, s.subject, now);
      const excess = active.slice(limit).map((r) => r.session_id);
      if (excess.length > 0) {
        await tx.updateTable("auth_session").set({ revoke_time: now, revoke_reason: "session limit" }).where("session_id", "in", excess).where("revoke_time", "is", null).execute();
      }
      return excess;
    }, { scope: s.projectId });
    for (const id of revoked) this.remember(id, { revoked: true, at: now, seenWritten: now });
    await this.publish(revoked.map((id) => `s:${id}`));
    if (revoked.length > 0) this.deps.log.info({ projectId: s.projectId, subject: s.subject, revoked: revoked.length }, "session limit: oldest sessions revoked");
    return revoked.includes(s.sessionId!);
  }

  /** Active sessions of a subject, newest first. */
  private activeOf(db: Db, projectId: string, subject: string, now: number) {
    return db
      .selectFrom("auth_session")
      .select(["session_id"])
      .where("project_id", "=", projectId)
      .where("subject", "=", subject)
      .where("revoke_time", "is", null)
      .where((eb) => eb.or([eb("expire_time", "is", null), eb("expire_time", ">", now)]))
      .orderBy("create_time", "desc")
      .orderBy("session_id", "desc")
      .execute();
  }

  private async cutoffOf(projectId: string, subject: string, now: number): Promise<number> {
    const key = `${projectId}\n${subject}`;
    const hit = this.cutoffs.get(key);
    if (hit && now - hit.at < this.cacheMs) return hit.before;
    const row = await this.deps.database.db.selectFrom("session_cutoff").select("revoke_before").where("project_id", "=", projectId).where("subject", "=", subject).executeTakeFirst();
    const before = row?.revoke_before ?? 0;
    if (this.cutoffs.size >= 50_000) this.cutoffs.clear();
    this.cutoffs.set(key, { before, at: now });
    return before;
  }

  private remember(id: string, entry: { revoked: boolean; at: number; seenWritten: number }): void {
    if (this.known.size >= 50_000) this.known.clear();
    this.known.set(id, entry);
  }

  /** Sessions the caller may see, most recently seen first. */
  async list(caller: SessionCaller, projectId: CheckedProject, size: number, token: string, showInactive: boolean) {
    const now = this.deps.clock.now();
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["number", "string"]);
    let q = this.deps.database.db.selectFrom("auth_session").selectAll().where("project_id", "=", projectId);
    if (caller.role < Role.ADMIN) q = q.where("subject", "=", caller.subject);
    if (!showInactive) q = q.where("revoke_time", "is", null).where((eb) => eb.or([eb("expire_time", "is", null), eb("expire_time", ">", now)]));
    if (cursor) {
      const [seen, id] = cursor as [number, string];
      q = q.where((eb) => eb.or([eb("last_seen_time", "<", seen), eb.and([eb("last_seen_time", "=", seen), eb("session_id", "<", id)])]));
    }
    const rows = await q.orderBy("last_seen_time", "desc").orderBy("session_id", "desc").limit(limit + 1).execute();
    const page = pageOf(rows, limit, (r) => [r.last_seen_time, r.session_id]);
    return { items: await this.withBudgets(page.items), nextPageToken: page.nextPageToken };
  }

  /** Rows with the budget each session spends from, when it has one. */
  async withBudgets(rows: SessionRow[]): Promise<SessionView[]> {
    const ids = [...new Set(rows.map((r) => r.budget_id).filter((id): id is string => id !== null))];
    const budgets = ids.length === 0 ? [] : await this.deps.database.db.selectFrom("wallet_budget").select(["budget_id", "limit_micros", "spent_micros"]).where("budget_id", "in", ids).execute();
    const byId = new Map(budgets.map((b) => [b.budget_id, { limit: b.limit_micros, spent: b.spent_micros }]));
    return rows.map((row) => ({ row, budget: row.budget_id === null ? undefined : byId.get(row.budget_id) }));
  }

  async get(caller: SessionCaller, { project: projectId, id }: ChildRef): Promise<SessionRow> {
    const name = sessionName(projectId, id);
    const row = await this.deps.database.db.selectFrom("auth_session").selectAll().where("project_id", "=", projectId).where("session_id", "=", id).executeTakeFirst();
    // Another user's session is NOT_FOUND for non-admins, as if it did not exist.
    if (!row || (caller.role < Role.ADMIN && row.subject !== caller.subject)) throw notFound(`session "${name}"`);
    return row;
  }

  /** Revokes one session; revoking a revoked session returns it unchanged. */
  async revoke(caller: SessionCaller, ref: ChildRef): Promise<SessionRow> {
    const row = await this.get(caller, ref);
    if (row.revoke_time !== null) return row;
    const now = this.deps.clock.now();
    await this.deps.database.db.updateTable("auth_session").set({ revoke_time: now, revoke_reason: `revoked by ${caller.subject}` }).where("session_id", "=", row.session_id).where("revoke_time", "is", null).execute();
    this.remember(row.session_id, { revoked: true, at: now, seenWritten: now });
    await this.publish([`s:${row.session_id}`]);
    return { ...row, revoke_time: now, revoke_reason: `revoked by ${caller.subject}` };
  }

  /** Revokes every session of `subject` (the caller when empty); tokens issued before now fail. */
  async revokeAll(caller: SessionCaller, projectId: CheckedProject, subject: string): Promise<{ revoked: number; revokeTime: number }> {
    const target = subject === "" ? caller.subject : subject;
    if (target !== caller.subject && caller.role < Role.ADMIN) throw permissionDenied("only admins revoke other subjects' sessions", "ROLE_TOO_LOW");
    const now = this.deps.clock.now();
    const ids = await this.deps.database.transaction(async (tx) => {
      await tx
        .insertInto("session_cutoff")
        .values({ project_id: projectId, subject: target, revoke_before: now })
        .onConflict((oc) => oc.columns(["project_id", "subject"]).doUpdateSet({ revoke_before: now }))
        .execute();
      const active = await this.activeOf(tx, projectId, target, now);
      const list = active.map((r) => r.session_id);
      if (list.length > 0) await tx.updateTable("auth_session").set({ revoke_time: now, revoke_reason: `all revoked by ${caller.subject}` }).where("session_id", "in", list).execute();
      return list;
    }, { scope: projectId });
    this.cutoffs.set(`${projectId}\n${target}`, { before: now, at: now });
    for (const id of ids) this.remember(id, { revoked: true, at: now, seenWritten: now });
    await this.publish([`c:${projectId}\n${target}`, ...ids.map((id) => `s:${id}`)]);
    return { revoked: ids.length, revokeTime: now };
  }

  private async publish(ids: string[]): Promise<void> {
    if (ids.length > 0) await this.deps.invalidation?.publish(ids);
  }

  /** Another instance revoked: forget what was cached (`s:` sessions, `c:` cut-offs; undefined: everything). */
  drop(ids: string[] | undefined): void {
    if (ids === undefined) {
      this.known.clear();
      this.cutoffs.clear();
      return;
    }
    for (const id of ids) {
      if (id.startsWith("s:")) this.known.delete(id.slice(2));
      else if (id.startsWith("c:")) this.cutoffs.delete(id.slice(2));
    }
  }
}
