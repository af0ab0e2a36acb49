/**
 * Agents and hires. An agent is private (owner only), shared (owner plus
 * listed projects) or public; a project that cannot see one gets NOT_FOUND.
 * A hire puts a visible, active agent into one of the plan's slots; the slot
 * count and the insert share one write transaction, so the limit holds under
 * concurrency. Disabling an agent refuses new hires and invocations but keeps
 * hires; deleting it (with force, when other projects hire it) releases them.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Selectable } from "kysely";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { LimitExceededSchema, LimitReason, UpgradeOptionSchema } from "../../gen/formstate/v1/errors_pb.js";
import type { Caller } from "../accounts/accounts.js";
import { ownChild, ownProject } from "../auth/project-scope.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { newId } from "../ids.js";
import type { Plan, Plans } from "../plans/plans.js";
import type { AgentTable, HireTable } from "./catalog-tables.js";
import type { Models } from "./models.js";

export type AgentRow = Selectable<AgentTable>;
export type HireRow = Selectable<HireTable>;

export interface AgentFields {
  displayName: string;
  description: string;
  models: string[];
  pricePerInvocation: number;
  status: string;
  visibility: string;
  sharedWith: string[];
}

export const agentName = (id: string) => `agents/${id}`;
export const hireName = (projectId: string, id: string) => `accounts/${projectId}/hires/${id}`;
const idOf = (name: string) => (name.startsWith("agents/") ? name.slice("agents/".length) : name);
const list = (json: string) => JSON.parse(json) as string[];

export interface AgentsDeps {
  database: Database;
  clock: Clock;
  plans: Plans;
  models: Models;
  planOf(projectId: string): Promise<Plan>;
}

export class Agents {
  constructor(private readonly deps: AgentsDeps) {}

  visibleTo(row: AgentRow, projectId: string): boolean {
    return row.owner_project === projectId || row.visibility === "public" || (row.visibility === "shared" && list(row.shared_with).includes(projectId));
  }

  async create(caller: Caller, id: string, f: AgentFields): Promise<AgentRow> {
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
      create_time: now,
      update_time: now,
    };
    return this.deps.database.transaction(async (tx) => {
      if (await tx.selectFrom("agent").select("agent_id").where("agent_id", "=", id).executeTakeFirst()) throw alreadyExists(`agent "${agentName(id)}"`);
      await tx.insertInto("agent").values(row).execute();
      return row;
    });
  }

  async get(caller: Caller, name: string): Promise<AgentRow> {
    const row = await this.find(this.deps.database.db, name);
    if (!row || !this.visibleTo(row, caller.projectId)) throw notFound(`agent "${name}"`);
    return row;
  }

  async list(
    caller: Caller,
    filter: { ownerProject?: string; visibility?: string; model?: string; status?: string; hiredOnly: boolean },
    order: "name" | "create_time desc" | "price_per_invocation",
    size: number,
    token: string,
  ) {
    const p = caller.projectId;
    const n = pageSize(size);
    let q = this.deps.database.db
      .selectFrom("agent")
      .selectAll()
      .where((eb) =>
        eb.or([
          eb("owner_project", "=", p),
          eb("visibility", "=", "public"),
          // shared_with is a JSON array of ids matching [a-z0-9-]: a quoted match is exact.
          eb.and([eb("visibility", "=", "shared"), eb("shared_with", "like", `%"${p}"%`)]),
        ]),
      );
    if (filter.ownerProject) q = q.where("owner_project", "=", filter.ownerProject);
    if (filter.visibility) q = q.where("visibility", "=", filter.visibility);
    if (filter.status) q = q.where("status", "=", filter.status);
    if (filter.model) q = q.where("models", "like", `%"${filter.model}"%`);
    if (filter.hiredOnly) {
      q = q.where("agent_id", "in", (eb) => eb.selectFrom("hire").select("agent_id").where("project_id", "=", p).where("state", "=", "active"));
    }
    if (order === "price_per_invocation") {
      const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
      if (after) q = q.where((eb) => eb.or([eb("price_per_invocation", ">", after[0]), eb.and([eb("price_per_invocation", "=", after[0]), eb("agent_id", ">", after[1])])]));
      return pageOf(await q.orderBy("price_per_invocation").orderBy("agent_id").limit(n + 1).execute(), n, (r) => [r.price_per_invocation, r.agent_id]);
    }
    if (order === "create_time desc") {
      const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
      if (after) q = q.where((eb) => eb.or([eb("create_time", "<", after[0]), eb.and([eb("create_time", "=", after[0]), eb("agent_id", "<", after[1])])]));
      return pageOf(await q.orderBy("create_time", "desc").orderBy("agent_id", "desc").limit(n + 1).execute(), n, (r) => [r.create_time, r.agent_id]);
    }
    const after = decodePageToken(token, ["string"]) as [string] | undefined;
    if (after) q = q.where("agent_id", ">", after[0]);
    return pageOf(await q.orderBy("agent_id").limit(n + 1).execute(), n, (r) => [r.agent_id]);
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
      }
      const visibility = changes.visibility ?? row.visibility;
      if (visibility !== "shared" && list(changes.shared_with ?? row.shared_with).length) {
        if (paths.includes("shared_with_projects")) throw invalidArgument("agent.shared_with_projects", "is only for SHARED agents");
        changes.shared_with = "[]";
      }
      await tx.updateTable("agent").set(changes).where("agent_id", "=", row.agent_id).execute();
      return (await this.find(tx, name))!;
    });
  }

  async delete(caller: Caller, name: string, force: boolean): Promise<void> {
    const now = this.deps.clock.now();
    await this.deps.database.transaction(async (tx) => {
      const row = await this.owned(tx, caller, name);
      const others = await tx.selectFrom("hire").select("hire_id").where("agent_id", "=", row.agent_id).where("state", "=", "active").where("project_id", "!=", row.owner_project).execute();
      if (others.length && !force) {
        throw failedPrecondition(`${name} is hired by ${others.length} other project(s); set force to delete it and release those hires`, "AGENT_HIRED");
      }
      await tx.updateTable("hire").set({ state: "released", release_time: now }).where("agent_id", "=", row.agent_id).where("state", "=", "active").execute();
      await tx.deleteFrom("agent").where("agent_id", "=", row.agent_id).execute();
    });
  }

  // ---- hires ----

  async hire(caller: Caller, parent: string, agent: string, requestId: string): Promise<{ hire: HireRow; used: number; plan: Plan }> {
    const projectId = ownProject(caller, parent);
    const plan = await this.deps.planOf(projectId);
    return this.deps.database.transaction(async (tx) => {
      if (requestId) {
        const replay = await tx.selectFrom("hire").selectAll().where("project_id", "=", projectId).where("request_id", "=", requestId).executeTakeFirst();
        if (replay) return { hire: replay, used: await this.activeHires(tx, projectId), plan };
      }
      const row = await this.find(tx, agent);
      if (!row || !this.visibleTo(row, projectId)) throw notFound(`agent "${agent}"`);
      if (row.status === "disabled") throw failedPrecondition(`${agent} is disabled`, "AGENT_DISABLED");
      const existing = await tx.selectFrom("hire").select("hire_id").where("project_id", "=", projectId).where("agent_id", "=", row.agent_id).where("state", "=", "active").executeTakeFirst();
      if (existing) throw alreadyExists(`hire of ${agent} (${hireName(projectId, existing.hire_id)})`);
      const used = await this.activeHires(tx, projectId);
      if (plan.agentSlots !== null && used >= plan.agentSlots) throw this.slotsError(plan, used);
      const hire: HireRow = {
        hire_id: newId(),
        project_id: projectId,
        agent_id: row.agent_id,
        state: "active",
        hired_by: caller.subject,
        request_id: requestId || null,
        create_time: this.deps.clock.now(),
        release_time: null,
      };
      await tx.insertInto("hire").values(hire).execute();
      return { hire, used: used + 1, plan };
    });
  }

  async release(caller: Caller, name: string): Promise<{ hire: HireRow; used: number; plan: Plan }> {
    const { projectId, id } = ownChild(caller, name, "hires", "hire");
    const plan = await this.deps.planOf(projectId);
    return this.deps.database.transaction(async (tx) => {
      const hire = await tx.selectFrom("hire").selectAll().where("project_id", "=", projectId).where("hire_id", "=", id).executeTakeFirst();
      if (!hire) throw notFound(`hire "${name}"`);
      if (hire.state === "active") {
        await tx.updateTable("hire").set({ state: "released", release_time: this.deps.clock.now() }).where("hire_id", "=", id).execute();
      }
      const after = (await tx.selectFrom("hire").selectAll().where("hire_id", "=", id).executeTakeFirst())!;
      return { hire: after, used: await this.activeHires(tx, projectId), plan };
    });
  }

  async hires(caller: Caller, parent: string, includeReleased: boolean, size: number, token: string) {
    const projectId = ownProject(caller, parent);
    const n = pageSize(size);
    let q = this.deps.database.db.selectFrom("hire").selectAll().where("project_id", "=", projectId);
    if (!includeReleased) q = q.where("state", "=", "active");
    const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
    if (after) q = q.where((eb) => eb.or([eb("create_time", "<", after[0]), eb.and([eb("create_time", "=", after[0]), eb("hire_id", "<", after[1])])]));
    return pageOf(await q.orderBy("create_time", "desc").orderBy("hire_id", "desc").limit(n + 1).execute(), n, (r) => [r.create_time, r.hire_id]);
  }

  async activeHires(db: Db, projectId: string): Promise<number> {
    const r = await db
      .selectFrom("hire")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .where("project_id", "=", projectId)
      .where("state", "=", "active")
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  // ---- for metering ----

  /** The agent of an invocation target (a hire name or an agent name) with its active hire, or the reason not. */
  async forInvocation(db: Db, projectId: string, target: { hire?: string; agent?: string }) {
    let hire: HireRow | undefined;
    if (target.hire) {
      const m = /^accounts\/([^/]+)\/hires\/([^/]+)$/.exec(target.hire);
      if (!m || m[1] !== projectId) throw notFound(`hire "${target.hire}"`);
      hire = await db.selectFrom("hire").selectAll().where("project_id", "=", projectId).where("hire_id", "=", m[2]).executeTakeFirst();
      if (!hire) throw notFound(`hire "${target.hire}"`);
      if (hire.state !== "active") throw failedPrecondition(`${target.hire} is released`, "HIRE_RELEASED");
    }
    const agentId = hire?.agent_id ?? idOf(target.agent ?? "");
    const row = await this.find(db, agentName(agentId));
    if (!row || !this.visibleTo(row, projectId)) throw notFound(`agent "${agentName(agentId)}"`);
    if (!hire) {
      hire = await db.selectFrom("hire").selectAll().where("project_id", "=", projectId).where("agent_id", "=", agentId).where("state", "=", "active").executeTakeFirst();
      if (!hire) throw failedPrecondition(`${agentName(agentId)} is not hired by this project: HireAgent first`, "AGENT_NOT_HIRED");
    }
    if (row.status === "disabled") throw failedPrecondition(`${agentName(agentId)} is disabled`, "AGENT_DISABLED");
    return { agent: row, hire, models: list(row.models) };
  }

  /** For the price book: a hired, active agent's price (undefined otherwise). */
  async priceForInvocation(db: Db, projectId: string, agent: string) {
    const row = await this.find(db, agent);
    if (!row || !this.visibleTo(row, projectId) || row.status === "disabled") return undefined;
    const hired = await db.selectFrom("hire").select("hire_id").where("project_id", "=", projectId).where("agent_id", "=", row.agent_id).where("state", "=", "active").executeTakeFirst();
    return hired ? { name: agentName(row.agent_id), pricePerInvocationMicros: Number(row.price_per_invocation) } : undefined;
  }

  /** For eligibility checks. */
  async hireStatus(db: Db, projectId: string, agent: string) {
    const row = await this.find(db, agent);
    const visible = Boolean(row && this.visibleTo(row, projectId));
    const hired = visible
      ? Boolean(await db.selectFrom("hire").select("hire_id").where("project_id", "=", projectId).where("agent_id", "=", row!.agent_id).where("state", "=", "active").executeTakeFirst())
      : false;
    return { visible, hired, pricePerInvocationMicros: visible ? Number(row!.price_per_invocation) : 0, slotsUsed: await this.activeHires(db, projectId) };
  }

  private find(db: Db, name: string): Promise<AgentRow | undefined> {
    return db.selectFrom("agent").selectAll().where("agent_id", "=", idOf(name)).executeTakeFirst();
  }

  private async owned(tx: Db, caller: Caller, name: string): Promise<AgentRow> {
    const row = await this.find(tx, name);
    if (!row || !this.visibleTo(row, caller.projectId)) throw notFound(`agent "${name}"`);
    if (row.owner_project !== caller.projectId) throw permissionDenied(`${name} belongs to another project`);
    if (caller.role < Role.DEVELOPER) throw permissionDenied("changing agents needs role developer");
    return row;
  }

  private async requireModels(caller: Caller, models: string[]): Promise<void> {
    for (const m of models) {
      if (!(await this.deps.models.priceForUsage(this.deps.database.db, caller.projectId, m))) throw notFound(`model "${m}"`);
    }
  }

  private slotsError(plan: Plan, used: number): ConnectError {
    const upgrades = this.deps.plans.upgradesFrom(plan, (p) => p.agentSlots === null || p.agentSlots > used);
    return new ConnectError(
      `the ${plan.displayName} plan allows ${plan.agentSlots} hired agents and ${used} are hired; release one or upgrade (${upgrades.map((p) => p.displayName).join(", ") || "no larger plan"})`,
      Code.ResourceExhausted,
      undefined,
      [
        {
          desc: LimitExceededSchema,
          value: create(LimitExceededSchema, {
            reason: LimitReason.AGENT_SLOTS,
            limit: BigInt(plan.agentSlots ?? 0),
            used: BigInt(used),
            requested: 1n,
            upgradeOptions: upgrades.map((p) => create(UpgradeOptionSchema, { tier: p.tier, limit: BigInt(p.agentSlots ?? 0), unlimited: p.agentSlots === null })),
          }),
        },
      ],
    );
  }
}
