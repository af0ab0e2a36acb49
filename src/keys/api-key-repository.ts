/**
 * Queries on api_key, api_key_event and api_key_ip. Each takes the database or a transaction;
 * those that change an api_key row only a write transaction (they `touch` it for the key cache).
 */
import type { Insertable, Selectable, Updateable } from "kysely";
import { touch } from "../db/commit-hooks.js";
import type { Db } from "../db/database.js";
import { prepared } from "../db/prepared.js";
import type { ApiKeyEventTable } from "./api-key-event-table.js";
import type { ApiKeyTable } from "./api-key-table.js";

export type ApiKeyRow = Selectable<ApiKeyTable>;
export type ApiKeyEventRow = Selectable<ApiKeyEventTable>;

const findKeyQuery = prepared((db, keyId: string) => db.selectFrom("api_key").selectAll().where("key_id", "=", keyId));

/** A key by id (a prepared query: metering reads a key's spend on every record). */
export async function findKey(db: Db, keyId: string): Promise<ApiKeyRow | undefined> {
  return (await findKeyQuery(db, keyId))[0];
}

const findKeyInProjectQuery = prepared((db, projectId: string, keyId: string) => db.selectFrom("api_key").selectAll().where("key_id", "=", keyId).where("project_id", "=", projectId));

/** A key of the project (a prepared query: a gateway names the customer key of every usage it records). */
export async function findKeyInProject(db: Db, projectId: string, keyId: string): Promise<ApiKeyRow | undefined> {
  return (await findKeyInProjectQuery(db, projectId, keyId))[0];
}

/** A key's spend so far (undefined: no such key). */
export async function spentOf(db: Db, keyId: string): Promise<number | undefined> {
  const r = await db.selectFrom("api_key").select("spent_micros").where("key_id", "=", keyId).executeTakeFirst();
  return r?.spent_micros;
}

export function findKeyByRequest(db: Db, projectId: string, createdBy: string, requestId: string): Promise<ApiKeyRow | undefined> {
  return db
    .selectFrom("api_key")
    .selectAll()
    .where("project_id", "=", projectId)
    .where("created_by", "=", createdBy)
    .where("create_request_id", "=", requestId)
    .executeTakeFirst();
}

export async function insertKey(db: Db, row: Insertable<ApiKeyTable>): Promise<void> {
  touch(db, { keys: [row.key_id] });
  await db.insertInto("api_key").values(row).execute();
}

export async function updateKey(db: Db, keyId: string, changes: Updateable<ApiKeyTable>): Promise<void> {
  touch(db, { keys: [keyId] });
  await db.updateTable("api_key").set(changes).where("key_id", "=", keyId).execute();
}

/** Standard keys that count against the plan's key limit: active or in a rotation grace period, not expired. */
export async function countLiveStandardKeys(db: Db, projectId: string, now: number): Promise<number> {
  const r = await db
    .selectFrom("api_key")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("project_id", "=", projectId)
    .where("kind", "=", "standard")
    .where("status", "=", "active")
    .where((eb) => eb.or([eb("expire_time", "is", null), eb("expire_time", ">", now)]))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

export interface KeyListFilter {
  includeScoped: boolean;
  /** Stored statuses to include, with expiry derived: "active" | "revoked" | "rotated" | "expired". */
  statuses: string[];
  now: number;
}

/** Keys newest first after the (create_time, key_id) cursor. */
export function listKeys(db: Db, projectId: string, filter: KeyListFilter, limit: number, before?: [number, string]): Promise<ApiKeyRow[]> {
  let q = db.selectFrom("api_key").selectAll().where("project_id", "=", projectId);
  if (!filter.includeScoped) q = q.where("kind", "=", "standard");
  if (filter.statuses.length) {
    const { now } = filter;
    q = q.where((eb) =>
      eb.or(
        filter.statuses.map((s) => {
          const notExpired = eb.or([eb("expire_time", "is", null), eb("expire_time", ">", now)]);
          if (s === "expired") return eb.and([eb("status", "in", ["active", "rotated"]), eb("expire_time", "<=", now)]);
          if (s === "revoked") return eb("status", "=", "revoked");
          return eb.and([eb("status", "=", s), notExpired]);
        }),
      ),
    );
  }
  if (before) {
    const [time, id] = before;
    q = q.where((eb) => eb.or([eb("create_time", "<", time), eb.and([eb("create_time", "=", time), eb("key_id", "<", id)])]));
  }
  return q.orderBy("create_time", "desc").orderBy("key_id", "desc").limit(limit).execute();
}

/** Revokes a key and every scoped key minted from it; returns the ids revoked now. */
export async function revokeWithChildren(db: Db, keyId: string, now: number, reason: string): Promise<string[]> {
  const children = await db.selectFrom("api_key").select("key_id").where("parent_key_id", "=", keyId).where("status", "!=", "revoked").execute();
  const ids = [keyId, ...children.map((c) => c.key_id)];
  touch(db, { keys: ids });
  await db
    .updateTable("api_key")
    .set({ status: "revoked", revoke_time: now, revoke_reason: reason, update_time: now })
    .where("key_id", "in", ids)
    .where("status", "!=", "revoked")
    .execute();
  return ids;
}

export async function childKeyIds(db: Db, keyId: string): Promise<string[]> {
  const rows = await db.selectFrom("api_key").select("key_id").where("parent_key_id", "=", keyId).execute();
  return rows.map((r) => r.key_id);
}

export async function insertEvent(db: Db, row: Omit<Insertable<ApiKeyEventTable>, "seq">): Promise<void> {
  // seq orders a project's events; the write transaction (BEGIN IMMEDIATE) makes max+1 safe.
  const last = await db
    .selectFrom("api_key_event")
    .select((eb) => eb.fn.max<number>("seq").as("seq"))
    .where("project_id", "=", row.project_id)
    .executeTakeFirst();
  await db.insertInto("api_key_event").values({ ...row, seq: Number(last?.seq ?? 0) + 1 }).execute();
}

/** A project's events (or one key's) newest first, after the seq cursor. */
export function listEvents(db: Db, projectId: string, keyId: string | undefined, types: string[], limit: number, beforeSeq?: number): Promise<ApiKeyEventRow[]> {
  let q = db.selectFrom("api_key_event").selectAll().where("project_id", "=", projectId);
  if (keyId) q = q.where("key_id", "=", keyId);
  if (types.length) q = q.where("type", "in", types);
  if (beforeSeq !== undefined) q = q.where("seq", "<", beforeSeq);
  return q.orderBy("seq", "desc").limit(limit).execute();
}

/** Records an address a key was used from; true when it had not been seen before. */
export async function rememberIp(db: Db, keyId: string, ip: string, now: number): Promise<boolean> {
  const r = await db
    .insertInto("api_key_ip")
    .values({ key_id: keyId, ip, first_seen_time: now })
    .onConflict((oc) => oc.columns(["key_id", "ip"]).doNothing())
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

export async function knownIps(db: Db, keyId: string): Promise<string[]> {
  const rows = await db.selectFrom("api_key_ip").select("ip").where("key_id", "=", keyId).execute();
  return rows.map((r) => r.ip);
}

/** Writes coalesced last-used times. */
export async function touchKeys(db: Db, lastUsed: Map<string, number>): Promise<void> {
  touch(db, { keys: lastUsed.keys() });
  for (const [keyId, time] of lastUsed) {
    await db
      .updateTable("api_key")
      .set({ last_used_time: time })
      .where("key_id", "=", keyId)
      .where((eb) => eb.or([eb("last_used_time", "is", null), eb("last_used_time", "<", time)]))
      .execute();
  }
}
