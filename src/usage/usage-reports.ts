/**
 * Reading usage back: summaries and timeseries from the hourly rollups (never
 * a scan of raw records, except the partial hours at a range's edges),
 * records page by page, and a forecast to the period's end.
 */
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import type { Clock } from "../clock.js";
import * as ledger from "../ledger/ledger.js";
import { DAY_MS, HOUR_MS, ceilTo, floorTo, monthOf } from "./period.js";
import type { UsageRecordRow } from "./usage.js";

export interface Totals {
  inputTokens: number;
  outputTokens: number;
  requests: number;
  costMicros: number;
}

export interface Summary {
  start: number;
  end: number;
  models: Array<Totals & { model: string }>;
  agents: Array<{ agent: string; invocations: number; costMicros: number }>;
  totals: Totals & { invocations: number };
}

const zero = (): Totals => ({ inputTokens: 0, outputTokens: 0, requests: 0, costMicros: 0 });

export class UsageReports {
  constructor(
    private readonly database: Database,
    private readonly clock: Clock,
    /** Brings the balance up to this instant before a forecast reads it (expired holds returned). */
    private readonly settleBalance: (projectId: string) => Promise<void> = async () => {},
  ) {}

  /** The current billing period (the UTC calendar month until subscriptions say otherwise). */
  period(): { start: number; end: number } {
    return monthOf(this.clock.now());
  }

  /** Totals per model and agent over [start, end). */
  async summary(projectId: string, start?: number, end?: number): Promise<Summary> {
    const s = start ?? this.period().start;
    // Unset end means now, inclusive of the current millisecond.
    const e = end ?? this.clock.now() + 1;
    const bySubject = await this.totalsBySubject(this.database.db, projectId, s, e);
    const models: Summary["models"] = [];
    const agents: Summary["agents"] = [];
    const totals = { ...zero(), invocations: 0 };
    for (const [key, t] of [...bySubject].sort(([a], [b]) => a.localeCompare(b))) {
      const [kind, subject] = key.split("\0");
      if (kind === "model") {
        models.push({ model: subject, ...t });
        totals.inputTokens += t.inputTokens;
        totals.outputTokens += t.outputTokens;
        totals.requests += t.requests;
      } else {
        agents.push({ agent: subject, invocations: t.requests, costMicros: t.costMicros });
        totals.invocations += t.requests;
      }
      totals.costMicros += t.costMicros;
    }
    return { start: s, end: e, models, agents, totals };
  }

  /**
   * Whole hours from the rollups; the partial hours at either edge from raw
   * records (indexed by time), so any range is exact and cheap.
   */
  private async totalsBySubject(db: Db, projectId: string, s: number, e: number): Promise<Map<string, Totals>> {
    const out = new Map<string, Totals>();
    const add = (kind: string, subject: string, t: Totals) => {
      const k = `${kind}\0${subject}`;
      const cur = out.get(k) ?? zero();
      out.set(k, {
        inputTokens: cur.inputTokens + t.inputTokens,
        outputTokens: cur.outputTokens + t.outputTokens,
        requests: cur.requests + t.requests,
        costMicros: cur.costMicros + t.costMicros,
      });
    };
    const hs = Math.min(ceilTo(s, HOUR_MS), e);
    const he = Math.max(floorTo(e, HOUR_MS), hs);
    if (he > hs) {
      const rows = await db
        .selectFrom("usage_rollup")
        .select((eb) => [
          "subject_kind",
          "subject",
          eb.fn.sum<number>("input_tokens").as("i"),
          eb.fn.sum<number>("output_tokens").as("o"),
          eb.fn.sum<number>("requests").as("n"),
          eb.fn.sum<number>("cost_micros").as("c"),
        ])
        .where("project_id", "=", projectId)
        .where("hour", ">=", hs)
        .where("hour", "<", he)
        .groupBy(["subject_kind", "subject"])
        .execute();
      for (const r of rows) add(r.subject_kind, r.subject, { inputTokens: Number(r.i), outputTokens: Number(r.o), requests: Number(r.n), costMicros: Number(r.c) });
    }
    for (const [a, b] of [[s, hs], [he, e]] as const) {
      if (b <= a) continue;
      const rows = await db
        .selectFrom("usage_record")
        .select((eb) => [
          "kind",
          eb.case().when("kind", "=", "agent").then(eb.ref("agent")).else(eb.ref("model")).end().as("subject"),
          eb.fn.sum<number>("input_tokens").as("i"),
          eb.fn.sum<number>("output_tokens").as("o"),
          eb.fn.countAll<number>().as("n"),
          eb.fn.sum<number>("cost_micros").as("c"),
        ])
        .where("project_id", "=", projectId)
        .where("occur_time", ">=", a)
        .where("occur_time", "<", b)
        .groupBy(["kind", "model", "agent"])
        .execute();
      for (const r of rows) add(r.kind, String(r.subject), { inputTokens: Number(r.i), outputTokens: Number(r.o), requests: Number(r.n), costMicros: Number(r.c) });
    }
    return out;
  }

  /** Hourly or daily buckets (UTC) over [start, end), every bucket present, from the rollups. */
  async timeseries(projectId: string, granularity: "hour" | "day", start: number, end: number | undefined, filter: { model?: string; agent?: string }) {
    const unit = granularity === "hour" ? HOUR_MS : DAY_MS;
    const s = floorTo(start, unit);
    const e = ceilTo(end ?? this.clock.now(), unit);
    let q = this.database.db
      .selectFrom("usage_rollup")
      .select(["hour", "input_tokens", "output_tokens", "requests", "cost_micros"])
      .where("project_id", "=", projectId)
      .where("hour", ">=", s)
      .where("hour", "<", e);
    if (filter.model) q = q.where("subject_kind", "=", "model").where("subject", "=", filter.model);
    if (filter.agent) q = q.where("subject_kind", "=", "agent").where("subject", "=", filter.agent);
    const buckets = new Map<number, Totals>();
    for (let t = s; t < e; t += unit) buckets.set(t, zero());
    for (const r of await q.execute()) {
      const b = buckets.get(floorTo(r.hour, unit))!;
      b.inputTokens += Number(r.input_tokens);
      b.outputTokens += Number(r.output_tokens);
      b.requests += Number(r.requests);
      b.costMicros += Number(r.cost_micros);
    }
    return [...buckets].map(([time, t]) => ({ time, ...t }));
  }

  /** Usage records newest first, filtered, after the (occur_time, id) cursor. */
  async list(projectId: string, f: { start?: number; end?: number; model?: string; agent?: string; apiKeyId?: string }, size: number, token: string) {
    const n = pageSize(size);
    const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
    let q = this.database.db.selectFrom("usage_record").selectAll().where("project_id", "=", projectId);
    if (f.start !== undefined) q = q.where("occur_time", ">=", f.start);
    if (f.end !== undefined) q = q.where("occur_time", "<", f.end);
    if (f.model) q = q.where("model", "=", f.model);
    if (f.agent) q = q.where("agent", "=", f.agent);
    if (f.apiKeyId) q = q.where("api_key_id", "=", f.apiKeyId);
    if (after) {
      const [t, id] = after;
      q = q.where((eb) => eb.or([eb("occur_time", "<", t), eb.and([eb("occur_time", "=", t), eb("record_id", "<", id)])]));
    }
    const rows: UsageRecordRow[] = await q.orderBy("occur_time", "desc").orderBy("record_id", "desc").limit(n + 1).execute();
    return pageOf(rows, n, (r) => [r.occur_time, r.record_id]);
  }

  /** Projects the period's spend and tokens from its rate so far, and when credits run out at that rate. */
  async forecast(projectId: string) {
    const now = this.clock.now();
    const { start, end } = this.period();
    const spent = await this.summary(projectId, start, now);
    await this.settleBalance(projectId);
    const balance = await ledger.balanceOf(this.database.db, projectId);
    const elapsed = Math.max(now - start, 1);
    const scale = (end - start) / elapsed;
    const rate = spent.totals.costMicros / elapsed; // micro-USD per ms
    const exhaust = rate > 0 ? now + Math.floor(Math.max(balance, 0) / rate) : undefined;
    return {
      start,
      end,
      spentToDate: spent.totals.costMicros,
      projectedSpend: Math.round(spent.totals.costMicros * scale),
      projectedInputTokens: Math.round(spent.totals.inputTokens * scale),
      projectedOutputTokens: Math.round(spent.totals.outputTokens * scale),
      balance,
      creditsExhaustedTime: exhaust !== undefined && exhaust < end ? exhaust : undefined,
    };
  }
}
