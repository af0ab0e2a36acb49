/** Queries on the account and member tables. Each takes the database or a transaction. */
import type { Insertable, Selectable, Updateable } from "kysely";
import type { Db } from "../db/database.js";
import type { AccountTable } from "./account-table.js";
import type { MemberTable } from "./member-table.js";

export type AccountRow = Selectable<AccountTable>;
export type MemberRow = Selectable<MemberTable>;

export function findAccount(db: Db, projectId: string): Promise<AccountRow | undefined> {
  return db.selectFrom("account").selectAll().where("project_id", "=", projectId).executeTakeFirst();
}

export async function insertAccount(db: Db, row: Insertable<AccountTable>): Promise<void> {
  await db.insertInto("account").values(row).execute();
}

export async function updateAccount(db: Db, projectId: string, changes: Updateable<AccountTable>): Promise<void> {
  await db.updateTable("account").set(changes).where("project_id", "=", projectId).execute();
}

export function findMember(db: Db, projectId: string, userId: string): Promise<MemberRow | undefined> {
  return db
    .selectFrom("member")
    .selectAll()
    .where("project_id", "=", projectId)
    .where("user_id", "=", userId)
    .executeTakeFirst();
}

/** Members oldest first, after the (create_time, user_id) cursor; fetches `limit` rows. */
export function listMembers(db: Db, projectId: string, limit: number, after?: [number, string]): Promise<MemberRow[]> {
  let q = db.selectFrom("member").selectAll().where("project_id", "=", projectId);
  if (after) {
    const [time, user] = after;
    q = q.where((eb) => eb.or([eb("create_time", ">", time), eb.and([eb("create_time", "=", time), eb("user_id", ">", user)])]));
  }
  return q.orderBy("create_time").orderBy("user_id").limit(limit).execute();
}

export async function insertMember(db: Db, row: Insertable<MemberTable>): Promise<void> {
  await db.insertInto("member").values(row).execute();
}

export async function updateMemberRole(db: Db, projectId: string, userId: string, role: string, now: number): Promise<void> {
  await db
    .updateTable("member")
    .set({ role, update_time: now })
    .where("project_id", "=", projectId)
    .where("user_id", "=", userId)
    .execute();
}

export async function deleteMember(db: Db, projectId: string, userId: string): Promise<void> {
  await db.deleteFrom("member").where("project_id", "=", projectId).where("user_id", "=", userId).execute();
}

export async function countAdmins(db: Db, projectId: string): Promise<number> {
  const r = await db
    .selectFrom("member")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("project_id", "=", projectId)
    .where("role", "=", "admin")
    .executeTakeFirstOrThrow();
  return Number(r.n);
}
