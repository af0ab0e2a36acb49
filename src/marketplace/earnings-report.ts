/** Reads of the earnings ledger for publishers: totals and per-resource lines over a range. */
import { sql } from "kysely";
import type { Db } from "../db/database.js";

export interface EarningsTotal {
  gross: number;
  earnings: number;
  platformFee: number;
  clawback: number;
  usageCount: number;
}

export interface EarningsReport {
  total: EarningsTotal;
  resources: Array<{ resource: string; total: EarningsTotal }>;
  paidOut: number;
  balance: number;
}

const zero = (): EarningsTotal => ({ gross: 0, earnings: 0, platformFee: 0, clawback: 0, usageCount: 0 });

/** A publisher's earnings in [start, end): splits net of clawbacks, by resource; payouts; the balance at `end`. */
export async function earningsReport(db: Db, publisher: string, start: number, end: number): Promise<EarningsReport> {
  const lines = await db
    .selectFrom("publisher_earning")
    .select((eb) => [
      "resource",
      eb.fn.sum<number>("gross_micros").as("gross"),
      eb.fn.sum<number>("amount_micros").as("earnings"),
      eb.fn.sum<number>("platform_fee_micros").as("fee"),
      sql<number>`sum(case when kind = 'clawback' then amount_micros else 0 end)`.as("clawback"),
      sql<number>`count(distinct case when kind = 'earning' then usage_record_id end)`.as("n"),
    ])
    .where("publisher_project", "=", publisher)
    .where("kind", "in", ["earning", "clawback"])
    .where("create_time", ">=", start)
    .where("create_time", "<", end)
    .groupBy("resource")
    .execute();
  const total = zero();
  const resources = lines
    .map((l) => {
      const t: EarningsTotal = { gross: Number(l.gross ?? 0), earnings: Number(l.earnings ?? 0), platformFee: Number(l.fee ?? 0), clawback: Number(l.clawback ?? 0), usageCount: Number(l.n ?? 0) };
      for (const k of Object.keys(total) as Array<keyof EarningsTotal>) total[k] += t[k];
      return { resource: l.resource, total: t };
    })
    .sort((a, b) => b.total.earnings - a.total.earnings || a.resource.localeCompare(b.resource));
  const money = await db
    .selectFrom("publisher_earning")
    .select([
      sql<number>`sum(case when kind in ('payout', 'payout_reversal') and create_time >= ${start} then -amount_micros else 0 end)`.as("paid"),
      sql<number>`sum(amount_micros)`.as("balance"),
    ])
    .where("publisher_project", "=", publisher)
    .where("create_time", "<", end)
    .executeTakeFirst();
  // A record that paid for an agent and its tokens earns on two lines but counts once in the total.
  const distinct = await db
    .selectFrom("publisher_earning")
    .select(sql<number>`count(distinct usage_record_id)`.as("n"))
    .where("publisher_project", "=", publisher)
    .where("kind", "=", "earning")
    .where("create_time", ">=", start)
    .where("create_time", "<", end)
    .executeTakeFirst();
  total.usageCount = Number(distinct?.n ?? 0);
  return { total, resources, paidOut: Number(money?.paid ?? 0), balance: Number(money?.balance ?? 0) };
}
