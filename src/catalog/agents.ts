/**
 * Agents and hires. An agent is private (owner only), shared (owner plus
 * listed projects) or public; a project that cannot see one gets NOT_FOUND.
 * Agent ids are per project (keyed by owner and id): `agents/{id}` names the
 * caller's own agent of that id, else the public one (public ids are unique
 * among public agents), else one shared with the caller (repo.resolveAgent).
 * Another project's private agent is never named, so creating an agent with
 * its id succeeds as for a free id; only going public with an id another
 * project's public agent holds answers ALREADY_EXISTS (public information).
 * A hire puts a visible, active agent into one of the plan's slots; the slot
 * count and the insert share one write transaction, so the limit holds under
 * concurrency. A deprecated agent takes no new hires but its hires may still
 * invoke it; a disabled one takes neither new hires nor invocations, and its
 * hires stay (holding their slots) until released. Deleting an agent needs
 * force while other projects hire it, and releases every hire of it.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import type { Caller } from "../accounts/accounts.js";
import type { CheckedProject, ChildRef } from "../auth/tenancy.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { newId } from "../ids.js";
import { planLimitError } from "../plans/plan-limit-error.js";
import type { Plan, Plans } from "../plans/plans.js";
import * as repo from "./agent-repository.js";
import type { AgentRow, HireRow } from "./agent-repository.js";
import { accountName, agentIdOf, agentName, hireName, parseChildName } from "../names/names.js";
import { checkEtag } from "./etag.js";
import { catalogOrders, listedStatuses } from "./keyset.js";
import type { Models } from "./models.js";
import { DEFAULT_SHARE_BOUNDS, type ShareBounds, resolveShare } from "../marketplace/split.js";

export type { AgentRow, HireRow };

export interface AgentFields {
  displayName: string;
  description: string;
  models: string[];
  pricePerInvocation: number;
  /** active, deprecated, disabled; "" = unspecified. */
  status: string;
  /** private, shared, public; "" = unspecified. */
  visibility: string;
  sharedWith: string[];
  /** Basis points; undefined = unset (the platform default on create). */
  publisherShareBps?: number;
}

/** What metering charges for one invocation of a hired agent. */
export interface InvocationPrice {
  name: string;
  /** The project that owns the agent (with the id in `name`, its key). */
  ownerProject: string;
  pricePerInvocationMicros: number;
  /** The project's active hire the invocation goes through. */
  hireName: string;
}

export { agentName, hireName };
const idOf = agentIdOf;
const list = (json: string) => JSON.parse(json) as string[];

const orders = catalogOrders("price_per_invocation");
export type AgentOrder = keyof typeof orders;

export interface AgentsDeps {
  database: Database;
  clock: Clock;
  plans: Plans;
  models: Models;
  /** The platform's bounds on publisher shares (default: DEFAULT_SHARE_BOUNDS). */
  shares?: ShareBounds;
  planOf(projectId: string): Promise<Plan>;
}

export class Agents {
  constructor(private readonly deps: AgentsDeps) {}

  private get shares(): ShareBounds {
    return this.deps.shares ?? DEFAULT_SHARE_BOUNDS;
  }

  /** For revenue share: the share of the agent `name` of `ownerProject` (undefined when it is gone or the owner unknown). */
  async publisherOf(db: Db, name: string, ownerProject: string | null): Promise<{ ownerProject: string; shareBps: number } | undefined> {
    if (ownerProject === null) return undefined;
    const row = await repo.findAgent(db, { owner_project: ownerProject, agent_id: idOf(name) });
    return row && { ownerProject: row.owner_project, shareBps: row.publisher_share_bps ?? this.shares.defaultBps };
  }

  visibleTo(row: AgentRow, projectId: string): boolean {
    return row.owner_project === projectId || row.visibility === "public" || (row.visibility === "shared" && list(row.shared_with).includes(projectId));
  }

  async create(caller: Caller, id: string, f: AgentFields, requestId: string): Promise<AgentRow> {
    const now = this.deps.clock.now();
    const visibility = f.visibility || "private";
    if (f.sharedWith.length && visibility !== "shared") throw invalidArgument("agent.shared_with_projects", "is only for SHARED agents");
    await this.requireModels(caller, f.models);
    const row: AgentRow = {
      agent_id: id,
      owner_project: caller.projectId,
      display_name: f.displayName,
      description: f.description,
      models: JSON.stringify(f.models),
      price_per_invocation: f.pricePerInvocation,
      status: f.status || "active",
      visibility,
      shared_with: JSON.stringify(f.sharedWith),
      publisher_share_bps: resolveShare("agent.publisher_share_bps", f.publisherShareBps, this.shares),
      created_by: caller.subject,
      create_request_id: requestId || null,
      create_time: now,
      update_time: now,
    };
    return this.deps.database.transaction(async (tx) => {
      // Only the caller's own ids and public ones can collide: another project's private agent is not looked at.
      const existing = await repo.findAgent(tx, row);
      if (existing) {
        const retry = requestId !== "" && existing.create_request_id === requestId && existing.created_by === caller.subject;
        if (retry) return existing;
        throw alreadyExists(`agent "${agentName(id)}"`);
      }
      if (visibility === "public") await this.requirePublicIdFree(tx, row);
      await repo.insertAgent(tx, row);
      await repo.insertAgentPrice(tx, row, now, row.price_per_invocation);
      return row;
    });
  }

  async get(caller: Caller, name: string): Promise<AgentRow> {
    const row = await this.visible(this.deps.database.db, caller.projectId, name);
    if (!row) throw notFound(`agent "${name}"`);
    return row;
  }

  list(
    caller: Caller,
    filter: { ownerProject?: string; visibility?: string; model?: string; status?: string; hiredOnly: boolean },
    order: AgentOrder,
    size: number,
    token: string,
  ) {
    return repo.listAgents(this.deps.database.db, caller.projectId, { ...filter, statuses: listedStatuses(filter.status) }, orders[order], size, token);
  }

  async update(caller: Caller, name: string, paths: string[], f: AgentFields): Promise<AgentRow> {
    if (paths.includes("models")) await this.requireModels(caller, f.models);
    return this.deps.database.transaction(async (tx) => {
      const row = await this.owned(tx, caller, name);
      const changes: Partial<AgentRow> = { update_time: this.deps.clock.now() };
      for (const p of paths) {
        if (p === "display_name") changes.display_name = f.displayName;
        if (p === "description") changes.description = f.description;
        if (p === "models") changes.models = JSON.stringify(f.models);
        if (p === "price_per_invocation_micros") changes.price_per_invocation = f.pricePerInvocation;
        if (p === "status") changes.status = f.status;
        if (p === "visibility") changes.visibility = f.visibility;
        if (p === "shared_with_projects") changes.shared_with = JSON.stringify(f.sharedWith);
        if (p === "publisher_share_bps") changes.publisher_share_bps = resolveShare("agent.publisher_share_bps", f.publisherShareBps ?? 0, this.shares);
      }
      const visibility = changes.visibility ?? row.visibility;
      if (visibility !== "shared" && list(changes.shared_with ?? row.shared_with).length) {
        if (paths.includes("shared_with_projects")) throw invalidArgument("agent.shared_with_projects", "is only for SHARED agents");
        // Leaving SHARED empties the list, so a later SHARED starts from no one.
        changes.shared_with = "[]";
      }
      if (visibility === "public" && row.visibility !== "public") await this.requirePublicIdFree(tx, row);
      await repo.updateAgent(tx, row, changes);
      // Every price the agent has had is kept, so backdated usage is charged the one in force then.
      if (changes.price_per_invocation !== undefined && changes.price_per_invocation !== row.price_per_invocation) {
        await repo.insertAgentPrice(tx, row, changes.update_time!, changes.price_per_invocation);
      }
      return (await repo.findAgent(tx, row))!;
    });
  }

  async delete(caller: Caller, name: string, force: boolean, etag: string): Promise<void> {
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (tx) => {
      const row = await this.owned(tx, caller, name);
      checkEtag(name, row, etag);
      const others = await repo.countOtherActiveHires(tx, row, row.owner_project);
      if (others && !force) {
        throw failedPrecondition(`${name} is hired by ${others} other project(s); set force to delete it and release those hires`, "AGENT_HIRED");
      }
      await repo.releaseHiresOf(tx, row, now);
      await repo.deleteAgent(tx, row);
    });
  }

  // ---- hires ----

  async hire(caller: Caller, projectId: CheckedProject, agent: string, requestId: string): Promise<{ hire: HireRow; used: number; plan: Plan }> {
    const parent = accountName(projectId);
    const plan = await this.deps.planOf(projectId);
    return this.deps.database.transaction(async (tx) => {
      if (!(await repo.accountExists(tx, projectId))) throw notFound(`account "${parent}"`);
      if (requestId) {
        const replay = await repo.findHireByRequest(tx, projectId, requestId);
        if (replay && replay.agent_id !== idOf(agent)) throw invalidArgument("request_id", `was used to hire ${agentName(replay.agent_id)}, not ${agent}`);
        if (replay) return { hire: replay, used: await repo.countActiveHires(tx, projectId), plan };
      }
      const row = await this.visible(tx, projectId, agent);
      if (!row) throw notFound(`agent "${agent}"`);
      if (row.status !== "active") {
        throw failedPrecondition(`${agent} is ${row.status}: it takes no new hires`, row.status === "disabled" ? "AGENT_DISABLED" : "AGENT_DEPRECATED");
      }
      const existing = await repo.findActiveHire(tx, projectId, row);
      if (existing) throw alreadyExists(`hire of ${agent} (${hireName(projectId, existing.hire_id)})`);
      const used = await repo.countActiveHires(tx, projectId);
      if (plan.agentSlots !== null && used >= plan.agentSlots) throw this.slotsError(plan, used);
      const hire: HireRow = {
        hire_id: newId(),
        project_id: projectId,
        agent_owner: row.owner_project,
        agent_id: row.agent_id,
        state: "active",
        hired_by: caller.subject,
        request_id: requestId || null,
        create_time: this.deps.clock.now(),
        release_time: null,
      };
      await repo.insertHire(tx, hire);
      return { hire, used: used + 1, plan };
    });
  }

  /** Releases a hire (a released one comes back unchanged); works whether or not the project still sees the agent. */
  async release(_caller: Caller, { project: projectId, id }: ChildRef): Promise<{ hire: HireRow; used: number; plan: Plan }> {
    const name = hireName(projectId, id);
    const plan = await this.deps.planOf(projectId);
    return this.deps.database.transaction(async (tx) => {
      if (!(await repo.findHire(tx, projectId, id))) throw notFound(`hire "${name}"`);
      await repo.releaseHire(tx, id, this.deps.clock.now());
      return { hire: (await repo.findHire(tx, projectId, id))!, used: await repo.countActiveHires(tx, projectId), plan };
    });
  }

  hires(_caller: Caller, projectId: CheckedProject, includeReleased: boolean, size: number, token: string) {
    return repo.listHires(this.deps.database.db, projectId, includeReleased, size, token);
  }

  /** Slots in use: the project's active hires. */
  activeHires(db: Db, projectId: string): Promise<number> {
    return repo.countActiveHires(db, projectId);
  }

  // ---- for metering ----

  /**
   * InvokeAgent's target (a hire name or an agent name) with its active hire,
   * or the error saying why not. A hire names its agent exactly (owner and
   * id), so a hire of a public agent still invokes it after the project
   * created an agent of its own with the same id; an agent name resolves as
   * everywhere (the project's own agent first).
   */
  async forInvocation(db: Db, projectId: string, target: { hire?: string; agent?: string }) {
    let hire: HireRow | undefined;
    let row: AgentRow | undefined;
    if (target.hire) {
      hire = await this.projectHire(db, projectId, target.hire);
      if (!hire) throw notFound(`hire "${target.hire}"`);
      if (hire.state !== "active") throw failedPrecondition(`${target.hire} is released`, "HIRE_RELEASED");
      row = await this.hiredAgent(db, projectId, hire);
    } else {
      row = await this.visible(db, projectId, target.agent ?? "");
    }
    const name = agentName(hire?.agent_id ?? idOf(target.agent ?? ""));
    if (!row) throw notFound(`agent "${name}"`);
    hire ??= await repo.findActiveHire(db, projectId, row);
    if (!hire) throw failedPrecondition(`${name} is not hired by this project: HireAgent first`, "AGENT_NOT_HIRED");
    if (row.status === "disabled") throw failedPrecondition(`${name} is disabled`, "AGENT_DISABLED");
    return { agent: row, hire, models: list(row.models) };
  }

  /**
   * For metering: an agent the project can see, has an active hire of, and
   * that is not disabled (a deprecated agent still serves its hires), with
   * its current price; undefined otherwise. With `via` (the hire an
   * InvokeAgent goes through), the agent is that hire's.
   */
  async agentForInvocation(db: Db, projectId: string, agent: string, via?: string): Promise<InvocationPrice | undefined> {
    let row: AgentRow | undefined;
    let hire: HireRow | undefined;
    if (via) {
      hire = await this.projectHire(db, projectId, via);
      if (!hire || hire.state !== "active" || hire.agent_id !== idOf(agent)) return undefined;
      row = await this.hiredAgent(db, projectId, hire);
    } else {
      row = await this.visible(db, projectId, agent);
      hire = row && (await repo.findActiveHire(db, projectId, row));
    }
    if (!row || !hire || row.status === "disabled") return undefined;
    return { name: agentName(row.agent_id), ownerProject: row.owner_project, pricePerInvocationMicros: Number(row.price_per_invocation), hireName: hireName(projectId, hire.hire_id) };
  }

  /**
   * For backdated metering: the per-invocation price in force at `at` of an
   * agent the project may invoke now (as agentForInvocation); `price`
   * undefined when the agent had no price yet at `at` (published later).
   */
  async agentForInvocationAt(
    db: Db,
    projectId: string,
    agent: string,
    at: number,
    via?: string,
  ): Promise<(Omit<InvocationPrice, "pricePerInvocationMicros"> & { price?: number }) | undefined> {
    const now = await this.agentForInvocation(db, projectId, agent, via);
    if (!now) return undefined;
    const then = await repo.agentPriceAt(db, { owner_project: now.ownerProject, agent_id: idOf(now.name) }, at);
    return { name: now.name, ownerProject: now.ownerProject, hireName: now.hireName, price: then ? Number(then.price_per_invocation) : undefined };
  }

  /** For eligibility checks. */
  async hireStatus(db: Db, projectId: string, agent: string) {
    const row = await this.visible(db, projectId, agent);
    const hired = row ? Boolean(await repo.findActiveHire(db, projectId, row)) : false;
    return { visible: Boolean(row), hired, pricePerInvocationMicros: row ? Number(row.price_per_invocation) : 0, slotsUsed: await repo.countActiveHires(db, projectId) };
  }

  /** The agent `name` resolves to for the project (its own first, then public, then shared with it). */
  private async visible(db: Db, projectId: string, name: string): Promise<AgentRow | undefined> {
    const row = await repo.resolveAgent(db, projectId, idOf(name));
    return row && this.visibleTo(row, projectId) ? row : undefined;
  }

  /** The project's hire of that name, if any. */
  private async projectHire(db: Db, projectId: string, name: string): Promise<HireRow | undefined> {
    const ref = parseChildName(name, "hires");
    return ref && ref.project === projectId ? repo.findHire(db, projectId, ref.id) : undefined;
  }

  /** The agent a hire is of, while the project may still see it (a hire of an agent deleted before migration 0015 names no owner). */
  private async hiredAgent(db: Db, projectId: string, hire: HireRow): Promise<AgentRow | undefined> {
    if (hire.agent_owner === null) return undefined;
    const row = await repo.findAgent(db, { owner_project: hire.agent_owner, agent_id: hire.agent_id });
    return row && this.visibleTo(row, projectId) ? row : undefined;
  }

  /** Public ids are unique among public agents: another project's public agent of the id answers ALREADY_EXISTS (it is public, so this tells nothing secret). */
  private async requirePublicIdFree(tx: Db, row: repo.AgentKey): Promise<void> {
    if (await repo.findOtherPublicAgent(tx, row.agent_id, row.owner_project)) {
      throw alreadyExists(`public agent "${agentName(row.agent_id)}"`);
    }
  }

  /** An agent the caller may change: NOT_FOUND if invisible, PERMISSION_DENIED if visible but another project's. */
  private async owned(tx: Db, caller: Caller, name: string): Promise<AgentRow> {
    const row = await this.visible(tx, caller.projectId, name);
    if (!row) throw notFound(`agent "${name}"`);
    if (row.owner_project !== caller.projectId) throw permissionDenied(`${name} belongs to another project`);
    if (caller.role < Role.DEVELOPER) throw permissionDenied("changing agents needs role developer");
    return row;
  }

  /** Every listed model must be one the project can see (NOT_FOUND otherwise, as for GetModel). */
  private async requireModels(caller: Caller, models: string[]): Promise<void> {
    for (const m of models) {
      if (!(await this.deps.models.visible(this.deps.database.db, caller.projectId, m))) throw notFound(`model "${m}"`);
    }
  }

  private slotsError(plan: Plan, used: number): ConnectError {
    return planLimitError(this.deps.plans, plan, used, {
      reason: LimitReason.AGENT_SLOTS,
      code: Code.ResourceExhausted,
      limitOf: (p) => p.agentSlots,
      noun: "hired agents",
      usedVerb: "are hired",
      remedy: "release one",
    });
  }

}
