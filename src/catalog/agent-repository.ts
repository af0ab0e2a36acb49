/** Queries on agent and hire. Each takes the database or a transaction. */
import { type Insertable, type Selectable, type SqlBool, type Updateable, sql } from "kysely";
import type { Db } from "../db/database.js";
import type { AgentTable, HireTable } from "./catalog-tables.js";
import { type KeysetOrder, containsLiterally, keysetPage } from "./keyset.js";

export type AgentRow = Selectable<AgentTable>;
export type HireRow = Selectable<HireTable>;

export interface AgentFilter {
  ownerProject?: string;
  visibility?: string;
  /** Only agents that list this model name. */
  model?: string;
  /** Only these statuses. */
  statuses: string[];
  /** Only agents the project has an active hire of. */
  hiredOnly: boolean;
}

/** An agent's key: its owner and its id (migration 0015). A row is its own key. */
export type AgentKey = Pick<AgentRow, "owner_project" | "agent_id">;

export function findAgent(db: Db, key: AgentKey): Promise<AgentRow | undefined> {
  return db.selectFrom("agent").selectAll().where("owner_project", "=", key.owner_project).where("agent_id", "=", key.agent_id).executeTakeFirst();
}

/**
 * The agent `agents/{agentId}` names for a project: its own agent of that id,
 * else the public agent of that id (there is at most one), else one shared
 * with it (the earliest created, then by owner, when several owners share
 * the same id with it). Another project's private agent is never a candidate.
 */
export async function resolveAgent(db: Db, projectId: string, agentId: string): Promise<AgentRow | undefined> {
  const rows = await db
    .selectFrom("agent")
    .selectAll()
    .where("agent_id", "=", agentId)
    .where((eb) => eb.or([eb("owner_project", "=", projectId), eb("visibility", "=", "public"), eb.and([eb("visibility", "=", "shared"), containsLiterally("shared_with", JSON.stringify(projectId))])]))
    .execute();
  const rank = (r: AgentRow) => (r.owner_project === projectId ? 0 : r.visibility === "public" ? 1 : 2);
  return rows.sort((a, b) => rank(a) - rank(b) || a.create_time - b.create_time || (a.owner_project < b.owner_project ? -1 : 1))[0];
}

/** The public agent of that id by another project than `projectId`, if any (public ids are unique among public agents). */
export function findOtherPublicAgent(db: Db, agentId: string, projectId: string): Promise<Pick<AgentRow, "owner_project"> | undefined> {
  return db.selectFrom("agent").select("owner_project").where("agent_id", "=", agentId).where("visibility", "=", "public").where("owner_project", "!=", projectId).executeTakeFirst();
}

export async function insertAgent(db: Db, row: Insertable<AgentTable>): Promise<void> {
  await db.insertInto("agent").values(row).execute();
}

export async function updateAgent(db: Db, key: AgentKey, changes: Updateable<AgentTable>): Promise<void> {
  await db.updateTable("agent").set(changes).where("owner_project", "=", key.owner_project).where("agent_id", "=", key.agent_id).execute();
}

/** Deletes an agent and its price history (usage records keep the prices they were charged). */
export async function deleteAgent(db: Db, key: AgentKey): Promise<void> {
  await db.deleteFrom("agent_price").where("owner_project", "=", key.owner_project).where("agent_id", "=", key.agent_id).execute();
  await db.deleteFrom("agent").where("owner_project", "=", key.owner_project).where("agent_id", "=", key.agent_id).execute();
}

/** Records the per-invocation price that applies from `at` on; a second change in the same millisecond replaces the first. */
export async function insertAgentPrice(db: Db, key: AgentKey, at: number, price: number): Promise<void> {
  await db
    .insertInto("agent_price")
    .values({ owner_project: key.owner_project, agent_id: key.agent_id, effective_from: at, price_per_invocation: price })
    .onConflict((oc) => oc.columns(["owner_project", "agent_id", "effective_from"]).doUpdateSet({ price_per_invocation: price }))
    .execute();
}

/** The per-invocation price that applied at `at`: the latest one in effect from then or before. */
export function agentPriceAt(db: Db, key: AgentKey, at: number) {
  return db
    .selectFrom("agent_price")
    .select(["price_per_invocation", "effective_from"])
    .where("owner_project", "=", key.owner_project)
    .where("agent_id", "=", key.agent_id)
    .where("effective_from", "<=", at)
    .orderBy("effective_from", "desc")
    .limit(1)
    .executeTakeFirst();
}

/**
 * Agents a project can see and name (its own, public, shared with it),
 * filtered, one keyset page: each id once, as resolveAgent resolves it (an
 * agent shadowed by the project's own of the same id, or a shared one by a
 * public one, is left out).
 */
export function listAgents(db: Db, projectId: string, filter: AgentFilter, order: KeysetOrder, size: number, token: string) {
  // shared_with and models are JSON arrays of strings: a quoted match is an exact element.
  const sharedWithMe = (t: "agent" | "o") => sql<SqlBool>`${sql.ref(`${t}.visibility`)} = 'shared' AND ${containsLiterally(`${t}.shared_with`, JSON.stringify(projectId))}`;
  let q = db
    .selectFrom("agent")
    .selectAll("agent")
    .where((eb) =>
      eb.or([
        eb("agent.owner_project", "=", projectId),
        eb.and([
          eb.or([eb("agent.visibility", "=", "public"), sharedWithMe("agent")]),
          // Not shadowed: the project's own agent of the id wins, then the public one, then the earliest shared one.
          eb.not(
            eb.exists(
              eb
                .selectFrom("agent as o")
                .select(sql.lit(1).as("one"))
                .whereRef("o.agent_id", "=", "agent.agent_id")
                .where((o) =>
                  o.or([
                    o("o.owner_project", "=", projectId),
                    o.and([o("agent.visibility", "=", "shared"), o("o.visibility", "=", "public")]),
                    o.and([
                      o("agent.visibility", "=", "shared"),
                      sharedWithMe("o"),
                      o.or([o("o.create_time", "<", o.ref("agent.create_time")), o.and([o("o.create_time", "=", o.ref("agent.create_time")), o("o.owner_project", "<", o.ref("agent.owner_project"))])]),
                    ]),
                  ]),
                ),
            ),
          ),
        ]),
      ]),
    )
    .where("agent.status", "in", filter.statuses);
  if (filter.ownerProject) q = q.where("agent.owner_project", "=", filter.ownerProject);
  if (filter.visibility) q = q.where("agent.visibility", "=", filter.visibility);
  if (filter.model) q = q.where(containsLiterally("agent.models", JSON.stringify(filter.model)));
  if (filter.hiredOnly) {
    q = q.where((eb) =>
      eb.exists(
        eb
          .selectFrom("hire")
          .select(sql.lit(1).as("one"))
          .where("hire.project_id", "=", projectId)
          .where("hire.state", "=", "active")
          .whereRef("hire.agent_owner", "=", "agent.owner_project")
          .whereRef("hire.agent_id", "=", "agent.agent_id"),
      ),
    );
  }
  return keysetPage(q, "agent_id", order, size, token);
}

export function accountExists(db: Db, projectId: string): Promise<boolean> {
  // A hire references its project's account; read the key only.
  return db
    .selectFrom("account")
    .select("project_id")
    .where("project_id", "=", projectId)
    .executeTakeFirst()
    .then(Boolean);
}

export function findHire(db: Db, projectId: string, hireId: string): Promise<HireRow | undefined> {
  return db.selectFrom("hire").selectAll().where("project_id", "=", projectId).where("hire_id", "=", hireId).executeTakeFirst();
}

export function findHireByRequest(db: Db, projectId: string, requestId: string): Promise<HireRow | undefined> {
  return db.selectFrom("hire").selectAll().where("project_id", "=", projectId).where("request_id", "=", requestId).executeTakeFirst();
}

/** The project's active hire of the agent, if any (there is at most one). */
export function findActiveHire(db: Db, projectId: string, key: AgentKey): Promise<HireRow | undefined> {
  return db
    .selectFrom("hire")
    .selectAll()
    .where("project_id", "=", projectId)
    .where("agent_owner", "=", key.owner_project)
    .where("agent_id", "=", key.agent_id)
    .where("state", "=", "active")
    .executeTakeFirst();
}

export async function insertHire(db: Db, row: Insertable<HireTable>): Promise<void> {
  await db.insertInto("hire").values(row).execute();
}

export async function releaseHire(db: Db, hireId: string, now: number): Promise<void> {
  await db.updateTable("hire").set({ state: "released", release_time: now }).where("hire_id", "=", hireId).where("state", "=", "active").execute();
}

/** Releases every active hire of the agent (when it is deleted). */
export async function releaseHiresOf(db: Db, key: AgentKey, now: number): Promise<void> {
  await db
    .updateTable("hire")
    .set({ state: "released", release_time: now })
    .where("agent_owner", "=", key.owner_project)
    .where("agent_id", "=", key.agent_id)
    .where("state", "=", "active")
    .execute();
}

/** Active hires of the agent by projects other than `projectId`. */
export async function countOtherActiveHires(db: Db, key: AgentKey, projectId: string): Promise<number> {
  const r = await db
    .selectFrom("hire")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("agent_owner", "=", key.owner_project)
    .where("agent_id", "=", key.agent_id)
    .where("state", "=", "active")
    .where("project_id", "!=", projectId)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

export async function countActiveHires(db: Db, projectId: string): Promise<number> {
  const r = await db
    .selectFrom("hire")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("project_id", "=", projectId)
    .where("state", "=", "active")
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** The project's hires newest first, one keyset page. */
export function listHires(db: Db, projectId: string, includeReleased: boolean, size: number, token: string) {
  let q = db.selectFrom("hire").selectAll().where("project_id", "=", projectId);
  if (!includeReleased) q = q.where("state", "=", "active");
  return keysetPage(q, "hire_id", { column: "create_time", desc: true }, size, token);
}
