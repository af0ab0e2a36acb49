/**
 * One reporting source of truth, as a property: after a random mix of model
 * usage, agent operations with and without tokens (RecordUsage and
 * InvokeAgent), holds settled and released, and backdated records, every
 * report agrees with the records and with the others: GetUsageSummary (any
 * range, edges included), GetUsageTimeseries (hourly and daily, unfiltered,
 * per model, per agent) and ListUsageRecords (unfiltered, per model, per
 * agent). The expected values come from a plain reference over the records
 * the calls returned, not from the server's own rules.
 */
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { type UsageRecord, UsageGranularity, UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { ManualClock } from "../../src/clock.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { DAY_MS, HOUR_MS, ceilTo, floorTo } from "../../src/usage/period.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, agentSlots: null, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
// Within the last 30 days of real time (protovalidate checks occur_time against the real clock); each
// run moves it forward a little over a day, never back (rate limiting and holds follow it).
const clock = new ManualClock(floorTo(Date.now() - 20 * DAY_MS, HOUR_MS) + 30 * 60_000);
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { clock, plans });
});
afterAll(async () => {
  await ts?.close();
});

/** The fields a report is built from, as a caller sees them. */
interface Rec {
  name: string;
  kind: "model" | "agent";
  model: string;
  agent: string;
  inputTokens: number;
  outputTokens: number;
  cost: number;
  invocationPrice: number;
  occur: number;
}

function recOf(r: UsageRecord): Rec {
  const u = r.usage;
  const base = { name: r.name, cost: Number(r.costMicros), invocationPrice: Number(r.price?.pricePerInvocationMicros ?? 0n), occur: timestampMs(r.occurTime!) };
  if (u.case === "modelUsage") return { ...base, kind: "model", model: u.value.model, agent: "", inputTokens: Number(u.value.inputTokens), outputTokens: Number(u.value.outputTokens) };
  if (u.case === "agentOperation") return { ...base, kind: "agent", model: u.value.model, agent: u.value.agent, inputTokens: Number(u.value.inputTokens), outputTokens: Number(u.value.outputTokens) };
  throw new Error("record without usage");
}

// ---- the reference: plain sums over records ----
const sum = (rs: Rec[], f: (r: Rec) => number) => rs.reduce((a, r) => a + f(r), 0);
const totalsOf = (rs: Rec[]) => ({
  inputTokens: sum(rs, (r) => r.inputTokens),
  outputTokens: sum(rs, (r) => r.outputTokens),
  requests: rs.filter((r) => r.kind === "model").length,
  invocations: rs.filter((r) => r.kind === "agent").length,
  costMicros: sum(rs, (r) => r.cost),
});
const modelLine = (rs: Rec[], model: string) => {
  const of = rs.filter((r) => r.model === model);
  return {
    inputTokens: sum(of, (r) => r.inputTokens),
    outputTokens: sum(of, (r) => r.outputTokens),
    requests: of.filter((r) => r.kind === "model").length,
    agentInvocations: of.filter((r) => r.kind === "agent").length,
    costMicros: sum(of, (r) => (r.kind === "model" ? r.cost : r.cost - r.invocationPrice)),
  };
};
const agentLine = (rs: Rec[], agent: string) => {
  const of = rs.filter((r) => r.agent === agent);
  return { invocations: of.length, costMicros: sum(of, (r) => r.cost), invocationCostMicros: sum(of, (r) => r.invocationPrice), inputTokens: sum(of, (r) => r.inputTokens), outputTokens: sum(of, (r) => r.outputTokens) };
};
/** A message's int64 fields as numbers, without its $typeName. */
const num = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== "$typeName").map(([k, v]) => [k, typeof v === "bigint" ? Number(v) : v]));
const inRange = (rs: Rec[], a: number, b: number) => rs.filter((r) => r.occur >= a && r.occur < b);

type Op =
  | { t: "model"; model: number; i: number; o: number; back: number }
  | { t: "agentOp"; agent: number; model: number; i: number; o: number; back: number }
  | { t: "invoke"; agent: number; model: number; i: number; o: number }
  | { t: "hold"; settle: boolean; model: number; i: number };

const tokens = fc.integer({ min: 0, max: 20_000 });
const back = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: DAY_MS }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant("model" as const), model: fc.integer({ min: 0, max: 2 }), i: tokens, o: tokens, back }),
  fc.record({ t: fc.constant("agentOp" as const), agent: fc.integer({ min: 0, max: 1 }), model: fc.integer({ min: -1, max: 1 }), i: tokens, o: tokens, back }),
  fc.record({ t: fc.constant("invoke" as const), agent: fc.integer({ min: 0, max: 1 }), model: fc.integer({ min: -1, max: 1 }), i: tokens, o: tokens }),
  fc.record({ t: fc.constant("hold" as const), settle: fc.boolean(), model: fc.integer({ min: 0, max: 2 }), i: tokens }),
);

let run = 0;

async function scenario(ops: Op[]): Promise<void> {
  const p = `rc-${run++}`;
  const parent = `accounts/${p}`;
  const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: p, role: "admin" }) });
  await admin.accounts.createAccount({ account: {} });
  await admin.billing.addCredits({ parent, amountMicros: 1_000_000_000_000n, reason: "test", requestId: "seed" });
  // The catalog exists from before the oldest backdated record (prices are those in force at occur_time).
  const models = [`models/${p}/a`, `models/${p}/b`, `models/${p}/c`];
  const prices: Array<[bigint, bigint]> = [[1_000_000n, 2_000_000n], [3_000_000n, 0n], [500_000n, 7_000_000n]];
  for (const [k, m] of models.entries()) await admin.models.createModel({ modelId: m.slice("models/".length), model: { inputPriceMicrosPerMillion: prices[k][0], outputPriceMicrosPerMillion: prices[k][1] } });
  const agents = [`agents/${p}-x`, `agents/${p}-y`];
  for (const [k, a] of agents.entries()) {
    await admin.agents.createAgent({ agentId: a.slice("agents/".length), agent: { pricePerInvocationMicros: BigInt(100 + 50 * k), models: models.slice(0, 2), visibility: AgentVisibility.PRIVATE } });
    await admin.agents.hireAgent({ parent, agent: a });
  }
  clock.advance(DAY_MS + HOUR_MS);
  // Tokens are signed at the (manual) clock's time: one for after the move.
  const devToken = await ts.token({ projectId: p, role: "developer" });
  const usage = createClient(UsageService, ts.grpc(devToken));
  const agentsApi = createClient(AgentService, ts.grpc(devToken));

  const returned: Rec[] = [];
  for (const [n, op] of ops.entries()) {
    const id = `op-${n}`;
    if (op.t === "model") {
      const r = await usage.recordUsage({ parent, requestId: id, occurTime: op.back ? timestampFromMs(clock.now() - op.back) : undefined, usage: { case: "modelUsage", value: { model: models[op.model], inputTokens: BigInt(op.i), outputTokens: BigInt(op.o) } } });
      returned.push(recOf(r.usageRecord!));
    } else if (op.t === "agentOp") {
      const withModel = op.model >= 0 && op.i + op.o > 0;
      const r = await usage.recordUsage({
        parent,
        requestId: id,
        occurTime: op.back ? timestampFromMs(clock.now() - op.back) : undefined,
        usage: { case: "agentOperation", value: { agent: agents[op.agent], operation: "work", ...(withModel && { model: models[op.model], inputTokens: BigInt(op.i), outputTokens: BigInt(op.o) }) } },
      });
      returned.push(recOf(r.usageRecord!));
    } else if (op.t === "invoke") {
      const withModel = op.model >= 0;
      const r = await agentsApi.invokeAgent({
        parent,
        target: { case: "agent", value: agents[op.agent] },
        requestId: id,
        operation: "run",
        ...(withModel && { model: models[op.model], inputTokens: BigInt(op.i), outputTokens: BigInt(op.o) }),
      });
      returned.push(recOf(await findRecord(usage, parent, r.invocation!.usageRecord)));
    } else {
      const hold = await usage.authorizeUsage({ parent, requestId: `${id}-hold`, estimate: { case: "estimatedCostMicros", value: 1_000_000n } });
      if (op.settle) {
        const r = await usage.recordUsage({ parent, requestId: id, authorization: hold.authorization!.name, usage: { case: "modelUsage", value: { model: models[op.model], inputTokens: BigInt(op.i) } } });
        returned.push(recOf(r.usageRecord!));
      } else {
        await usage.releaseAuthorization({ name: hold.authorization!.name });
      }
    }
  }
  clock.advance(1);

  // ListUsageRecords: exactly the records the calls returned.
  const all = await listAll(usage, { parent });
  expect(all.map(recOf).sort(byName)).toEqual([...returned].sort(byName));

  // An hour-aligned range around everything: summary = reference = Σ timeseries.
  const start = floorTo(Math.min(clock.now(), ...returned.map((r) => r.occur)), DAY_MS) - DAY_MS;
  const end = ceilTo(clock.now(), DAY_MS) + DAY_MS;
  const s = await usage.getUsageSummary({ parent, startTime: timestampFromMs(start), endTime: timestampFromMs(end) });
  expect(num(s.totals!)).toEqual(totalsOf(returned));
  for (const m of models) {
    const line = s.models.find((x) => x.model === m);
    const want = modelLine(returned, m);
    if (want.requests + want.agentInvocations === 0) expect(line).toBeUndefined();
    else expect(num({ ...line!, $typeName: undefined, model: undefined })).toMatchObject(want);
  }
  for (const a of agents) {
    const line = s.agents.find((x) => x.agent === a);
    const want = agentLine(returned, a);
    if (want.invocations === 0) expect(line).toBeUndefined();
    else expect(num({ ...line!, $typeName: undefined, agent: undefined })).toMatchObject(want);
  }
  // No double counting: the models' cost plus the agents' invocation charges is the total.
  expect(s.models.reduce((x, m) => x + Number(m.costMicros), 0) + s.agents.reduce((x, a) => x + Number(a.invocationCostMicros), 0)).toBe(Number(s.totals!.costMicros));

  for (const granularity of [UsageGranularity.HOUR, UsageGranularity.DAY]) {
    const unit = granularity === UsageGranularity.HOUR ? HOUR_MS : DAY_MS;
    const series = await usage.getUsageTimeseries({ parent, granularity, startTime: timestampFromMs(start), endTime: timestampFromMs(end) });
    for (const point of series.points) {
      const t = timestampMs(point.startTime!);
      expect(num({ ...point, $typeName: undefined, startTime: undefined })).toMatchObject(totalsOf(inRange(returned, t, t + unit)));
    }
    for (const m of models) {
      const pts = (await usage.getUsageTimeseries({ parent, granularity, startTime: timestampFromMs(start), endTime: timestampFromMs(end), model: m })).points;
      const want = modelLine(returned, m);
      expect({
        inputTokens: pts.reduce((a, x) => a + Number(x.inputTokens), 0),
        requests: pts.reduce((a, x) => a + Number(x.requests), 0),
        invocations: pts.reduce((a, x) => a + Number(x.invocations), 0),
        costMicros: pts.reduce((a, x) => a + Number(x.costMicros), 0),
      }).toEqual({ inputTokens: want.inputTokens, requests: want.requests, invocations: want.agentInvocations, costMicros: want.costMicros });
    }
    for (const a of agents) {
      const pts = (await usage.getUsageTimeseries({ parent, granularity, startTime: timestampFromMs(start), endTime: timestampFromMs(end), agent: a })).points;
      const want = agentLine(returned, a);
      expect({ invocations: pts.reduce((x, q) => x + Number(q.invocations), 0), costMicros: pts.reduce((x, q) => x + Number(q.costMicros), 0), outputTokens: pts.reduce((x, q) => x + Number(q.outputTokens), 0) }).toEqual({
        invocations: want.invocations,
        costMicros: want.costMicros,
        outputTokens: want.outputTokens,
      });
    }
  }

  // Record filters return the records behind each line, and only those.
  for (const m of models) {
    const listed = (await listAll(usage, { parent, model: m })).map(recOf);
    expect(listed.every((r) => r.model === m)).toBe(true);
    expect(listed.map((r) => r.name).sort()).toEqual(returned.filter((r) => r.model === m).map((r) => r.name).sort());
  }
  for (const a of agents) {
    const listed = (await listAll(usage, { parent, agent: a })).map(recOf);
    expect(listed.map((r) => r.name).sort()).toEqual(returned.filter((r) => r.agent === a).map((r) => r.name).sort());
  }

  // Any range, partial hours at both edges included: the summary is the reference over the records in it.
  for (const [a, b] of [
    [start + 17 * 60_000 + 123, end - 41 * 60_000],
    [clock.now() - 36 * HOUR_MS - 7, clock.now() - 90 * 60_000],
  ]) {
    const part = await usage.getUsageSummary({ parent, startTime: timestampFromMs(a), endTime: timestampFromMs(b) });
    expect(num(part.totals!)).toEqual(totalsOf(inRange(returned, a, b)));
  }
}

const byName = (a: Rec, b: Rec) => a.name.localeCompare(b.name);

async function listAll(usage: ReturnType<typeof createClient<typeof UsageService>>, req: { parent: string; model?: string; agent?: string }): Promise<UsageRecord[]> {
  const out: UsageRecord[] = [];
  let pageToken = "";
  do {
    const page = await usage.listUsageRecords({ ...req, pageSize: 7, pageToken });
    out.push(...page.usageRecords);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

async function findRecord(usage: ReturnType<typeof createClient<typeof UsageService>>, parent: string, name: string): Promise<UsageRecord> {
  const found = (await listAll(usage, { parent })).find((r) => r.name === name);
  if (!found) throw new Error(`record ${name} not listed`);
  return found;
}

describe("reports agree with the records and with each other", () => {
  it("summary, timeseries and record listings for random usage", async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 18 }), scenario), { numRuns: Number(process.env.FC_RUNS ?? 6), seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined, endOnFailure: true });
  }, 300_000);
});
