/** Queries on agent and hire. Each takes the database or a transaction. */
import type { Insertable, Selectable, Updateable } from "kysely";
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

export function findAgent(db: Db, agentId: string): Promise<AgentRow | undefined> {
  return db.selectFrom("agent").selectAll().where("agent_id", "=", agentId).executeTakeFirst();
}

export async function insertAgent(db: Db, row: Insertable<AgentTable>): Promise<void> {
  await db.insertInto("agent").values(row).execute();
}

export async function updateAgent(db: Db, agentId: string, changes: Updateable<AgentTable>): Promise<void> {
  await db.updateTable("agent").set(changes).where("agent_id", "=", agentId).execute();
}

/** Deletes an agent and its price history (usage records keep the prices they were charged). */
export async function deleteAgent(db: Db, agentId: string): Promise<void> {
  await db.deleteFrom("agent_price").where("agent_id", "=", agentId).execute();
  await db.deleteFrom("agent").where("agent_id", "=", agentId).execute();
}

/** Records the per-invocation price that applies from `at` on; a second change in the same millisecond replaces the first. */
export async function insertAgentPrice(db: Db, agentId: string, at: number, price: number): Promise<void> {
  await db
    .insertInto("agent_price")
    .values({ agent_id: agentId, effective_from: at, price_per_invocation: price })
    .onConflict((oc) => oc.columns(["agent_id", "effective_from"]).doUpdateSet({ price_per_invocation: price }))
    .execute();
}

/** The per-invocation price that applied at `at`: the latest one in effect from then or before. */
export function agentPriceAt(db: Db, agentId: string, at: number) {
  return db
    .selectFrom("agent_price")
    .select(["price_per_invocation", "effective_from"])
    .where("agent_id", "=", agentId)
    .where("effective_from", "<=", at)
    .orderBy("effective_from", "desc")
    .limit(1)
    .executeTakeFirst();
}

/** Agents a project can see (its own, public, shared with it), filtered, one keyset page. */
export function listAgents(db: Db, projectId: string, filter: AgentFilter, order: KeysetOrder, size: number, token: string) {
  let q = db
    .selectFrom("agent")
    .selectAll()
    .where((eb) =>
      eb.or([
        eb("owner_project", "=", projectId),
        eb("visibility", "=", "public"),
        // shared_with and models are JSON arrays of strings: a quoted match is an exact element.
        eb.and([eb("visibility", "=", "shared"), containsLiterally("shared_with", JSON.stringify(projectId))]),
      ]),
    )
    .where("status", "in", filter.statuses);
  if (filter.ownerProject) q = q.where("owner_project", "=", filter.ownerProject);
  if (filter.visibility) q = q.where("visibility", "=", filter.visibility);
  if (filter.model) q = q.where(containsLiterally("models", JSON.stringify(filter.model)));
  if (filter.hiredOnly) {
    q = q.where("agent_id", "in", (eb) => eb.selectFrom("hire").select("agent_id").where("project_id", "=", projectId).where("state", "=", "active"));
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
export function findActiveHire(db: Db, projectId: string, agentId: string): Promise<HireRow | undefined> {
  return db.selectFrom("hire").selectAll().where("project_id", "=", projectId).where("agent_id", "=", agentId).where("state", "=", "active").executeTakeFirst();
}

export async function insertHire(db: Db, row: Insertable<HireTable>): Promise<void> {
  await db.insertInto("hire").values(row).execute();
}

export async function releaseHire(db: Db, hireId: string, now: number): Promise<void> {
  await db.updateTable("hire").set({ state: "released", release_time: now }).where("hire_id", "=", hireId).where("state", "=", "active").execute();
}

/** Releases every active hire of the agent (when it is deleted). */
export async function releaseHiresOf(db: Db, agentId: string, now: number): Promise<void> {
  await db.updateTable("hire").set({ state: "released", release_time: now }).where("agent_id", "=", agentId).where("state", "=", "active").execute();
}

/** Active hires of the agent by projects other than `projectId`. */
export async function countOtherActiveHires(db: Db, agentId: string, projectId: string): Promise<number> {
  const r = await db
    .selectFrom("hire")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("agent_id", "=", agentId)
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
