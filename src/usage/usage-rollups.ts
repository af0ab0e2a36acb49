/**
 * The one set of rules every usage report follows. A usage record (or a group
 * of records alike in kind, model and agent) adds to these lines:
 * - a model record: its model's `model` line (tokens, cost);
 * - an agent record: its agent's `agent` line (tokens, full cost, and the
 *   token part of the cost), and, when it charged tokens of a model, that
 *   model's `agent_model` line (tokens, token cost).
 * The hourly rollups store exactly these lines (written with each record),
 * the partial hours at a range's edges are read from raw records through the
 * same function, and summaries, timeseries and record filters are derived
 * from the lines the same way, so every report agrees with the records.
 * Live and test (sandbox) usage keep separate lines: a report reads one.
 */
import type { Db } from "../db/database.js";
import { preparedInsert } from "../db/prepared.js";
import type { DatabaseSchema } from "../db/schema.js";
import type { InsertQueryBuilder, InsertResult } from "kysely";
import { HOUR_MS, floorTo } from "./period.js";

export type LineKind = "model" | "agent" | "agent_model";

export interface Amounts {
  inputTokens: number;
  outputTokens: number;
  /** Records counted on the line. */
  requests: number;
  costMicros: number;
  /** The part of costMicros paid for tokens (all of it for model lines). */
  tokenCostMicros: number;
}

export interface Line extends Amounts {
  kind: LineKind;
  subject: string;
}

/** One record, or records grouped by kind, model and agent, summed. */
export interface RecordGroup {
  kind: string;
  model: string | null;
  agent: string | null;
  inputTokens: number;
  outputTokens: number;
  count: number;
  costMicros: number;
  /** Σ invocation prices (0 for model records). */
  invocationMicros: number;
}

export const zeroAmounts = (): Amounts => ({ inputTokens: 0, outputTokens: 0, requests: 0, costMicros: 0, tokenCostMicros: 0 });

export function addAmounts(a: Amounts, b: Amounts): Amounts {
  return {
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    requests: a.requests + b.requests,
    costMicros: a.costMicros + b.costMicros,
    tokenCostMicros: a.tokenCostMicros + b.tokenCostMicros,
  };
}

/** The lines a record group adds to (see the file comment). */
export function linesOf(g: RecordGroup): Line[] {
  const tokens = { inputTokens: g.inputTokens, outputTokens: g.outputTokens, requests: g.count };
  if (g.kind !== "agent") return [{ kind: "model", subject: g.model!, ...tokens, costMicros: g.costMicros, tokenCostMicros: g.costMicros }];
  const tokenCost = g.costMicros - g.invocationMicros;
  const lines: Line[] = [{ kind: "agent", subject: g.agent!, ...tokens, costMicros: g.costMicros, tokenCostMicros: tokenCost }];
  if (g.model) lines.push({ kind: "agent_model", subject: g.model, ...tokens, costMicros: tokenCost, tokenCostMicros: tokenCost });
  return lines;
}

/** Adds one record's lines to its hour's rollups (inside the record's transaction). */
export async function rollUpRecord(
  tx: Db,
  r: { project_id: string; environment: string; occur_time: number; kind: string; model: string | null; agent: string | null; input_tokens: number; output_tokens: number; cost_micros: number; invocation_price: number },
): Promise<void> {
  const hour = floorTo(r.occur_time, HOUR_MS);
  const group: RecordGroup = { kind: r.kind, model: r.model, agent: r.agent, inputTokens: r.input_tokens, outputTokens: r.output_tokens, count: 1, costMicros: r.cost_micros, invocationMicros: r.invocation_price };
  for (const l of linesOf(group)) {
    await tx
      .insertInto("usage_rollup")
      .values({
        project_id: r.project_id,
        environment: r.environment,
        hour,
        subject_kind: l.kind,
        subject: l.subject,
        input_tokens: l.inputTokens,
        output_tokens: l.outputTokens,
        requests: l.requests,
        cost_micros: l.costMicros,
        token_cost_micros: l.tokenCostMicros,
      })
      .onConflict((oc) =>
        oc.columns(["project_id", "environment", "hour", "subject_kind", "subject"]).doUpdateSet((eb) => ({
          input_tokens: eb("usage_rollup.input_tokens", "+", l.inputTokens),
          output_tokens: eb("usage_rollup.output_tokens", "+", l.outputTokens),
          requests: eb("usage_rollup.requests", "+", l.requests),
          cost_micros: eb("usage_rollup.cost_micros", "+", l.costMicros),
          token_cost_micros: eb("usage_rollup.token_cost_micros", "+", l.tokenCostMicros),
        })),
      )
      .execute();
  }
}

/** The fields of a record its rollup lines read. */
export type RolledRecord = Parameters<typeof rollUpRecord>[1];

/**
 * Adds many records' lines to their hours' rollups: the lines are summed per
 * rollup row in memory and each row is upserted once (one statement per 500
 * rows). The same totals as `rollUpRecord` per record.
 */
export async function rollUpRecords(tx: Db, records: RolledRecord[]): Promise<void> {
  const rows = new Map<string, { project_id: string; environment: string; hour: number; subject_kind: LineKind; subject: string; input_tokens: number; output_tokens: number; requests: number; cost_micros: number; token_cost_micros: number }>();
  for (const r of records) {
    const hour = floorTo(r.occur_time, HOUR_MS);
    const group: RecordGroup = { kind: r.kind, model: r.model, agent: r.agent, inputTokens: r.input_tokens, outputTokens: r.output_tokens, count: 1, costMicros: r.cost_micros, invocationMicros: r.invocation_price };
    for (const l of linesOf(group)) {
      const key = `${r.project_id}\u0000${r.environment}\u0000${hour}\u0000${l.kind}\u0000${l.subject}`;
      const row = rows.get(key);
      if (row) {
        row.input_tokens += l.inputTokens;
        row.output_tokens += l.outputTokens;
        row.requests += l.requests;
        row.cost_micros += l.costMicros;
        row.token_cost_micros += l.tokenCostMicros;
      } else {
        rows.set(key, { project_id: r.project_id, environment: r.environment, hour, subject_kind: l.kind, subject: l.subject, input_tokens: l.inputTokens, output_tokens: l.outputTokens, requests: l.requests, cost_micros: l.costMicros, token_cost_micros: l.tokenCostMicros });
      }
    }
  }
  const all = [...rows.values()];
  for (let i = 0; i < all.length; i += 500) await upsertRollups(tx, all.slice(i, i + 500));
}

/** Prepared per row count (src/db/prepared.ts): adds to existing rollup rows. */
const upsertRollups = preparedInsert("usage_rollup", (q) =>
  (q as unknown as InsertQueryBuilder<DatabaseSchema, "usage_rollup", InsertResult>)
      .onConflict((oc) =>
        oc.columns(["project_id", "environment", "hour", "subject_kind", "subject"]).doUpdateSet((eb) => ({
          input_tokens: eb("usage_rollup.input_tokens", "+", eb.ref("excluded.input_tokens")),
          output_tokens: eb("usage_rollup.output_tokens", "+", eb.ref("excluded.output_tokens")),
          requests: eb("usage_rollup.requests", "+", eb.ref("excluded.requests")),
          cost_micros: eb("usage_rollup.cost_micros", "+", eb.ref("excluded.cost_micros")),
          token_cost_micros: eb("usage_rollup.token_cost_micros", "+", eb.ref("excluded.token_cost_micros")),
        })),
      ),
);

/** Raw records of [start, end) grouped for linesOf (the partial hours at a range's edges). */
export async function recordGroups(db: Db, projectId: string, start: number, end: number, environment = "live"): Promise<RecordGroup[]> {
  const rows = await db
    .selectFrom("usage_record")
    .select((eb) => [
      "kind",
      "model",
      "agent",
      eb.fn.sum<number>("input_tokens").as("i"),
      eb.fn.sum<number>("output_tokens").as("o"),
      eb.fn.countAll<number>().as("n"),
      eb.fn.sum<number>("cost_micros").as("c"),
      eb.fn.sum<number>("invocation_price").as("p"),
    ])
    .where("project_id", "=", projectId)
    .where("environment", "=", environment)
    .where("occur_time", ">=", start)
    .where("occur_time", "<", end)
    .groupBy(["kind", "model", "agent"])
    .execute();
  return rows.map((r) => ({
    kind: r.kind,
    model: r.model,
    agent: r.agent,
    inputTokens: Number(r.i),
    outputTokens: Number(r.o),
    count: Number(r.n),
    costMicros: Number(r.c),
    invocationMicros: Number(r.p),
  }));
}
