/**
 * Reading usage back: summaries and timeseries from the hourly rollups (never
 * a scan of raw records, except the partial hours at a range's edges),
 * records page by page, and a forecast to the period's end. Every report is
 * derived from the same report lines (usage-rollups.ts), so they agree.
 * Every report reads one environment: live unless test mode is asked for
 * (docs/test-mode.md), so sandbox usage never mixes into live figures.
 */
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import type { Clock } from "../clock.js";
import * as ledger from "../ledger/ledger.js";
import type { Environment } from "../ledger/ledger.js";
import { comparableMicros } from "../ledger/micros.js";
import { DAY_MS, HOUR_MS, ceilTo, floorTo, monthOf } from "./period.js";
import { type Amounts, type LineKind, addAmounts, linesOf, recordGroups, zeroAmounts } from "./usage-rollups.js";
import type { UsageRecordRow } from "./usage.js";

export interface Totals {
  inputTokens: number;
  outputTokens: number;
  requests: number;
  costMicros: number;
}

export interface ModelTotal extends Totals {
  model: string;
  /** Agent records that charged tokens of this model. */
  agentInvocations: number;
}

export interface AgentTotal {
  agent: string;
  invocations: number;
  costMicros: number;
  invocationCostMicros: number;
  inputTokens: number;
  outputTokens: number;
}

export interface Summary {
  start: number;
  end: number;
  models: ModelTotal[];
  agents: AgentTotal[];
  totals: Totals & { invocations: number };
}

/** A timeseries bucket: the totals of its range (or of one model's or agent's line). */
export type Point = Totals & { time: number; invocations: number };

type LineMap = Map<string, Amounts>;
const lineKey = (kind: LineKind, subject: string) => `${kind}\0${subject}`;
const get = (m: LineMap, kind: LineKind, subject: string) => m.get(lineKey(kind, subject)) ?? zeroAmounts();
const byCostThenName = <T extends { costMicros: number }>(name: (t: T) => string) => (a: T, b: T) => b.costMicros - a.costMicros || name(a).localeCompare(name(b));

/** The totals every line map stands for (the same rule for a summary and for a bucket). */
function totalsOf(lines: LineMap): Totals & { invocations: number } {
  const t = { inputTokens: 0, outputTokens: 0, requests: 0, invocations: 0, costMicros: 0 };
  for (const [key, a] of lines) {
    const kind = key.slice(0, key.indexOf("\0")) as LineKind;
    // agent_model lines repeat tokens and cost already on their agent's line.
    if (kind === "agent_model") continue;
    t.inputTokens += a.inputTokens;
    t.outputTokens += a.outputTokens;
    t.costMicros += a.costMicros;
    if (kind === "model") t.requests += a.requests;
    else t.invocations += a.requests;
  }
  return t;
}

/** One model's line: direct use plus tokens through agents. */
function modelTotalOf(lines: LineMap, model: string): ModelTotal {
  const direct = get(lines, "model", model);
  const viaAgents = get(lines, "agent_model", model);
  return {
    model,
    inputTokens: direct.inputTokens + viaAgents.inputTokens,
    outputTokens: direct.outputTokens + viaAgents.outputTokens,
    requests: direct.requests,
    agentInvocations: viaAgents.requests,
    costMicros: direct.costMicros + viaAgents.costMicros,
  };
}

function agentTotalOf(lines: LineMap, agent: string): AgentTotal {
  const a = get(lines, "agent", agent);
  return { agent, invocations: a.requests, costMicros: a.costMicros, invocationCostMicros: a.costMicros - a.tokenCostMicros, inputTokens: a.inputTokens, outputTokens: a.outputTokens };
}

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

  /** Totals per model and agent over [start, end), by the rules of usage-rollups.ts. */
  async summary(projectId: string, start?: number, end?: number, env: Environment = "live"): Promise<Summary> {
    const s = start ?? this.period().start;
    // Unset end means now, inclusive of the current millisecond.
    const e = end ?? this.clock.now() + 1;
    const lines = await this.linesOver(this.database.db, projectId, s, e, env);
    const models = new Set<string>();
    const agents = new Set<string>();
    for (const key of lines.keys()) {
      const [kind, subject] = key.split("\0");
      if (kind === "agent") agents.add(subject);
      else models.add(subject);
    }
    return {
      start: s,
      end: e,
      models: [...models].map((m) => modelTotalOf(lines, m)).sort(byCostThenName((t) => t.model)),
      agents: [...agents].map((a) => agentTotalOf(lines, a)).sort(byCostThenName((t) => t.agent)),
      totals: totalsOf(lines),
    };
  }

  /**
   * The report lines of [s, e): whole hours from the rollups, the partial
   * hours at either edge from raw records (indexed by time) through the same
   * rules, so any range is exact and cheap.
   */
  private async linesOver(db: Db, projectId: string, s: number, e: number, env: Environment): Promise<LineMap> {
    const out: LineMap = new Map();
    const add = (kind: LineKind, subject: string, a: Amounts) => out.set(lineKey(kind, subject), addAmounts(get(out, kind, subject), a));
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
          eb.fn.sum<number>("token_cost_micros").as("t"),
        ])
        .where("project_id", "=", projectId)
        .where("environment", "=", env)
        .where("hour", ">=", hs)
        .where("hour", "<", he)
        .groupBy(["subject_kind", "subject"])
        .execute();
      for (const r of rows) {
        add(r.subject_kind as LineKind, r.subject, { inputTokens: Number(r.i), outputTokens: Number(r.o), requests: Number(r.n), costMicros: Number(r.c), tokenCostMicros: Number(r.t) });
      }
    }
    for (const [a, b] of [[s, hs], [he, e]] as const) {
      if (b <= a) continue;
      for (const group of await recordGroups(db, projectId, a, b, env)) for (const l of linesOf(group)) add(l.kind, l.subject, l);
    }
    return out;
  }

  /**
   * Hourly or daily buckets (UTC) over [start, end), every bucket present, from
   * the rollups, by the summary's rules: unfiltered a bucket is the totals of
   * its range; with a model, that model's line (invocations: its agent
   * invocations); with an agent, that agent's line.
   */
  async timeseries(projectId: string, granularity: "hour" | "day", start: number, end: number | undefined, filter: { model?: string; agent?: string }, env: Environment = "live"): Promise<Point[]> {
    const unit = granularity === "hour" ? HOUR_MS : DAY_MS;
    const s = floorTo(start, unit);
    const e = ceilTo(end ?? this.clock.now(), unit);
    let q = this.database.db
      .selectFrom("usage_rollup")
      .select(["hour", "subject_kind", "subject", "input_tokens", "output_tokens", "requests", "cost_micros", "token_cost_micros"])
      .where("project_id", "=", projectId)
      .where("environment", "=", env)
      .where("hour", ">=", s)
      .where("hour", "<", e);
    if (filter.model) q = q.where("subject_kind", "in", ["model", "agent_model"]).where("subject", "=", filter.model);
    if (filter.agent) q = q.where("subject_kind", "=", "agent").where("subject", "=", filter.agent);
    const buckets = new Map<number, LineMap>();
    for (let t = s; t < e; t += unit) buckets.set(t, new Map());
    for (const r of await q.execute()) {
      const lines = buckets.get(floorTo(Number(r.hour), unit))!;
      const kind = r.subject_kind as LineKind;
      const amounts = { inputTokens: Number(r.input_tokens), outputTokens: Number(r.output_tokens), requests: Number(r.requests), costMicros: Number(r.cost_micros), tokenCostMicros: Number(r.token_cost_micros) };
      lines.set(lineKey(kind, r.subject), addAmounts(get(lines, kind, r.subject), amounts));
    }
    return [...buckets].map(([time, lines]) => {
      if (filter.model) {
        const m = modelTotalOf(lines, filter.model);
        return { time, inputTokens: m.inputTokens, outputTokens: m.outputTokens, requests: m.requests, invocations: m.agentInvocations, costMicros: m.costMicros };
      }
      if (filter.agent) {
        const a = agentTotalOf(lines, filter.agent);
        return { time, inputTokens: a.inputTokens, outputTokens: a.outputTokens, requests: 0, invocations: a.invocations, costMicros: a.costMicros };
      }
      return { time, ...totalsOf(lines) };
    });
  }

  /**
   * Usage records newest first, filtered, after the (occur_time, id) cursor.
   * A model filter returns the records that charged that model (model records
   * and agent records with tokens of it): the records behind its summary line.
   */
  async list(projectId: string, f: { start?: number; end?: number; model?: string; agent?: string; apiKeyId?: string; environment?: Environment }, size: number, token: string) {
    const n = pageSize(size);
    const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
    let q = this.database.db.selectFrom("usage_record").selectAll().where("project_id", "=", projectId).where("environment", "=", f.environment ?? "live");
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
  async forecast(projectId: string, env: Environment = "live") {
    const now = this.clock.now();
    const { start, end } = this.period();
    const spent = await this.summary(projectId, start, now, env);
    await this.settleBalance(projectId);
    const balance = await ledger.balanceOf(this.database.db, projectId, env);
    const elapsed = Math.max(now - start, 1);
    const scale = (end - start) / elapsed;
    const rate = spent.totals.costMicros / elapsed; // micro-USD per ms
    const exhaust = rate > 0 ? now + Math.floor(Math.max(comparableMicros(balance), 0) / rate) : undefined;
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
