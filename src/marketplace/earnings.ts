/**
 * The publisher earnings ledger: append-only entries, each unique by its
 * idempotency key, written inside the transaction of what caused them.
 * - `earning`: a consumer's usage of another project's model or agent,
 *   split by the rule of split.ts (gross = publisher + platform fee),
 *   booked with the consumer's debit; keyed by the usage record, so a
 *   record earns at most once. Usage of a project's own resources, of
 *   platform-wide models, and test-mode (sandbox) usage earns nothing; nor
 *   does a test-mode project's resource (it never receives real money).
 * - `clawback`: part of an earning taken back because the consumer's
 *   payment was refunded or disputed (negative gross, amount and fee).
 * - `payout` / `payout_reversal`: money sent to the publisher's Stripe
 *   account, and given back to the balance when Stripe refuses it.
 * A publisher's balance (what is owed) is the sum of its amounts.
 */
import { sql } from "kysely";
import type { Selectable } from "kysely";
import type { Db } from "../db/database.js";
import { newSortableId } from "../ids.js";
import type { PublisherEarningTable } from "./marketplace-tables.js";
import { clawbackSplit, split } from "./split.js";

export type EarningRow = Selectable<PublisherEarningTable>;
export type EarningKind = "earning" | "clawback" | "payout" | "payout_reversal";

/** Who publishes a resource and at what share (from the catalog). */
export interface Publisher {
  ownerProject: string | null;
  shareBps: number;
}

/** What earnings need from the catalog. */
export interface Publishers {
  /** The agent `name` of `ownerProject` (agents are keyed by owner and id); null = an owner unknown (undefined back). */
  agent(db: Db, name: string, ownerProject: string | null): Promise<Publisher | undefined>;
  model(db: Db, name: string): Promise<Publisher | undefined>;
}

/** The fields of a usage record the split reads. */
export interface ChargedUsage {
  record_id: string;
  project_id: string;
  kind: string;
  model: string | null;
  agent: string | null;
  /** The owner of the charged agent (agent usage). */
  agent_owner?: string | null;
  cost_micros: number;
  invocation_price: number;
  /** live or test; test-mode (sandbox) usage moves no real money, so it earns nothing. */
  environment?: string;
}

export type NewEntry = Omit<EarningRow, "entry_id" | "create_time">;

/** Appends an entry; a key booked before books nothing (returns false). */
export async function append(tx: Db, entry: NewEntry, now: number): Promise<boolean> {
  const res = await tx
    .insertInto("publisher_earning")
    .values({ ...entry, entry_id: newSortableId(), create_time: now })
    .onConflict((oc) => oc.column("idempotency_key").doNothing())
    .executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0n) > 0;
}

/**
 * The parts of a usage record's charge and whose resource each is: a
 * model's usage is all the model's; an agent's invocation price is the
 * agent's and the tokens it reported are their model's.
 */
function parts(r: ChargedUsage): Array<{ part: "agent" | "model"; resource: string; gross: number }> {
  if (r.kind === "model") return r.model ? [{ part: "model", resource: r.model, gross: r.cost_micros }] : [];
  const out: Array<{ part: "agent" | "model"; resource: string; gross: number }> = [];
  if (r.agent) out.push({ part: "agent", resource: r.agent, gross: r.invocation_price });
  const tokens = r.cost_micros - r.invocation_price;
  if (r.model && tokens > 0) out.push({ part: "model", resource: r.model, gross: tokens });
  return out;
}

/**
 * Books the publishers' earnings of one usage record, inside the
 * transaction that debits the consumer. Returns the entries booked.
 */
export async function bookUsageEarnings(tx: Db, publishers: Publishers, r: ChargedUsage, now: number): Promise<NewEntry[]> {
  const booked: NewEntry[] = [];
  if (r.environment === "test") return booked;
  for (const p of parts(r)) {
    if (p.gross <= 0) continue;
    const pub = p.part === "agent" ? await publishers.agent(tx, p.resource, r.agent_owner ?? null) : await publishers.model(tx, p.resource);
    // Platform-wide resources have no publisher; a project's use of its own earns it nothing.
    if (!pub?.ownerProject || pub.ownerProject === r.project_id) continue;
    if (await isTestProject(tx, pub.ownerProject)) continue;
    const entry = earningEntry(r, p, pub.ownerProject, pub.shareBps);
    if (await append(tx, entry, now)) booked.push(entry);
  }
  return booked;
}

/** The publisher's earning from one part (model or agent) of a usage record, split by the share. */
function earningEntry(r: ChargedUsage, p: ReturnType<typeof parts>[number], publisher: string, shareBps: number): NewEntry {
  const s = split(p.gross, shareBps);
  return {
    publisher_project: publisher,
    kind: "earning",
    resource: p.resource,
    consumer_project: r.project_id,
    usage_record_id: r.record_id,
    payout_id: null,
    earning_entry_id: null,
    share_bps: shareBps,
    gross_micros: s.gross,
    amount_micros: s.publisher,
    platform_fee_micros: s.platform,
    idempotency_key: `earning:${r.record_id}:${p.part}`,
  };
}

/** Whether a project is in test mode (docs/test-mode.md): it earns and is paid nothing real. */
async function isTestProject(db: Db, projectId: string): Promise<boolean> {
  const row = await db.selectFrom("account").select("environment").where("project_id", "=", projectId).executeTakeFirst();
  return row?.environment === "test";
}

/**
 * The earnings of many usage records (a set-based commit): the same entries
 * `bookUsageEarnings` books one record at a time, each resource's publisher
 * looked up once, written with one multi-row insert per 500 entries.
 */
export async function bookUsagesEarnings(tx: Db, publishers: Publishers, records: ChargedUsage[], now: number): Promise<NewEntry[]> {
  const lookups = new Map<string, Promise<Publisher | undefined>>();
  const testProjects = new Map<string, Promise<boolean>>();
  const entries: NewEntry[] = [];
  for (const r of records) {
    if (r.environment === "test") continue;
    for (const p of parts(r)) {
      if (p.gross <= 0) continue;
      const owner = r.agent_owner ?? null;
      const key = p.part === "agent" ? `agent:${owner}:${p.resource}` : `model:${p.resource}`;
      let lookup = lookups.get(key);
      if (!lookup) lookups.set(key, (lookup = p.part === "agent" ? publishers.agent(tx, p.resource, owner) : publishers.model(tx, p.resource)));
      const pub = await lookup;
      if (!pub?.ownerProject || pub.ownerProject === r.project_id) continue;
      let test = testProjects.get(pub.ownerProject);
      if (!test) testProjects.set(pub.ownerProject, (test = isTestProject(tx, pub.ownerProject)));
      if (await test) continue;
      entries.push(earningEntry(r, p, pub.ownerProject, pub.shareBps));
    }
  }
  for (let i = 0; i < entries.length; i += 500) {
    await tx
      .insertInto("publisher_earning")
      .values(entries.slice(i, i + 500).map((e) => ({ ...e, entry_id: newSortableId(), create_time: now })))
      .onConflict((oc) => oc.column("idempotency_key").doNothing())
      .execute();
  }
  return entries;
}

/** A publisher's balance: every amount it earned, less clawbacks and payouts. */
export async function balanceOf(db: Db, publisherProject: string): Promise<number> {
  const r = await db
    .selectFrom("publisher_earning")
    .select((eb) => eb.fn.sum<number>("amount_micros").as("sum"))
    .where("publisher_project", "=", publisherProject)
    .executeTakeFirst();
  return Number(r?.sum ?? 0);
}

/**
 * Takes back the publishers' share of `unfunded` micro-USD of a consumer's
 * spending whose payment was refunded or disputed: the consumer's most
 * recent earning charges first, each no further than what is left of it;
 * each piece split by clawbackSplit, so a charge taken back whole returns
 * exactly its split. `key` names the consumer's event (unique per event).
 * Returns the gross taken back (≤ unfunded: less when the consumer's
 * marketplace spending was smaller).
 */
export async function clawBack(tx: Db, consumerProject: string, unfunded: number, key: string, now: number): Promise<number> {
  let left = unfunded;
  let taken = 0;
  if (left <= 0) return 0;
  // Net of earlier clawbacks, per earning entry (one per usage record part), newest first.
  const rows = await tx
    .selectFrom("publisher_earning as e")
    .select(["e.entry_id", "e.publisher_project", "e.resource", "e.usage_record_id", "e.share_bps", "e.gross_micros", "e.amount_micros", "e.idempotency_key", "e.create_time"])
    .select((eb) =>
      eb
        .selectFrom("publisher_earning as c")
        .select(sql<number>`coalesce(-sum(c.gross_micros), 0)`.as("t"))
        .whereRef("c.earning_entry_id", "=", "e.entry_id")
        .where("c.kind", "=", "clawback")
        .as("taken"),
    )
    .where("e.consumer_project", "=", consumerProject)
    .where("e.kind", "=", "earning")
    .orderBy("e.create_time", "desc")
    .orderBy("e.entry_id", "desc")
    .execute();
  for (const e of rows) {
    if (left <= 0) break;
    const before = Number(e.taken ?? 0);
    const room = Number(e.gross_micros) - before;
    if (room <= 0) continue;
    const now_ = Math.min(room, left);
    const s = clawbackSplit({ gross: Number(e.gross_micros), publisher: Number(e.amount_micros) }, before, now_);
    await append(tx, clawbackEntry(e, consumerProject, { gross: -s.gross, publisher: -s.publisher, platform: -s.platform }, `clawback:${key}:${e.entry_id}`), now);
    left -= now_;
    taken += now_;
  }
  return taken;
}

/**
 * Gives back what clawbacks under `eventPrefix` (one charge's disputes,
 * `dispute:{charge}:`) took, up to `amount` of gross, most recent first:
 * the charge's payment stands again (a dispute won), so the spending it
 * paid for is funded again. Each piece reverses clawbackSplit exactly.
 * Returns the gross given back.
 */
export async function restore(tx: Db, consumerProject: string, amount: number, key: string, eventPrefix: string, now: number): Promise<number> {
  if (amount <= 0) return 0;
  const pieces = await tx
    .selectFrom("publisher_earning as c")
    .innerJoin("publisher_earning as e", "e.entry_id", "c.earning_entry_id")
    .select(["e.entry_id", "e.publisher_project", "e.resource", "e.usage_record_id", "e.share_bps", "e.gross_micros", "e.amount_micros"])
    .select((eb) => [eb.fn.sum<number>("c.gross_micros").as("net"), eb.fn.max<number>("c.create_time").as("last")])
    .where("c.consumer_project", "=", consumerProject)
    .where("c.kind", "=", "clawback")
    .where((eb) => eb.or([eb("c.idempotency_key", "like", `clawback:${eventPrefix}%`), eb("c.idempotency_key", "like", `restore:${eventPrefix}%`)]))
    .groupBy(["e.entry_id", "e.publisher_project", "e.resource", "e.usage_record_id", "e.share_bps", "e.gross_micros", "e.amount_micros"])
    .orderBy("last", "desc")
    .orderBy("e.entry_id", "desc")
    .execute();
  let left = amount;
  for (const e of pieces) {
    if (left <= 0) break;
    const owed = -Number(e.net ?? 0);
    if (owed <= 0) continue;
    const give = Math.min(owed, left);
    // Everything taken from this earning so far (by any event), to reverse the split at the right point.
    const takenRow = await tx
      .selectFrom("publisher_earning")
      .select(sql<number>`coalesce(-sum(gross_micros), 0)`.as("t"))
      .where("earning_entry_id", "=", e.entry_id)
      .where("kind", "=", "clawback")
      .executeTakeFirst();
    const taken = Number(takenRow?.t ?? 0);
    const back = clawbackSplit({ gross: Number(e.gross_micros), publisher: Number(e.amount_micros) }, taken - give, give);
    await append(tx, clawbackEntry(e, consumerProject, back, `restore:${key}:${e.entry_id}`), now);
    left -= give;
  }
  return amount - left;
}

/** A clawback entry against one earning (negative amounts take back, positive ones restore). */
function clawbackEntry(
  e: Pick<EarningRow, "entry_id" | "publisher_project" | "resource" | "usage_record_id" | "share_bps">,
  consumerProject: string,
  amounts: { gross: number; publisher: number; platform: number },
  idempotencyKey: string,
): NewEntry {
  return {
    publisher_project: e.publisher_project,
    kind: "clawback",
    resource: e.resource,
    consumer_project: consumerProject,
    usage_record_id: e.usage_record_id,
    payout_id: null,
    earning_entry_id: e.entry_id,
    share_bps: e.share_bps,
    gross_micros: amounts.gross,
    amount_micros: amounts.publisher,
    platform_fee_micros: amounts.platform,
    idempotency_key: idempotencyKey,
  };
}
