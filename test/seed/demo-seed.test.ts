/**
 * The development seed as a user meets it: `npm start` (src/main.ts) seeds
 * the demo project with priced models and a public agent, so the first calls
 * show real numbers: a price, an eligibility estimate, a charged record, a
 * hire and an invocation. A restart on the same data finds the seed again;
 * concurrent seeding creates nothing twice.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createFormstateClient } from "../../src/client/node.js";
import { DEMO_AGENT, DEMO_MODELS, seedDemoCatalog } from "../../src/seed/demo-catalog.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const root = join(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "fs-seed-"));
const children: ChildProcess[] = [];
let ts: TestServer | undefined;
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await ts?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `src/main.ts` in development on a free port; resolves with its URL and printed admin token. */
async function start(): Promise<{ url: string; token: string; child: ChildProcess }> {
  // A PostgreSQL pass would need its own schema handling: the seed is the same code on both stores, so SQLite here.
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: root,
    env: { ...process.env, FORMSTATE_DATA_DIR: dir, DATABASE_URL: join(dir, "seed.db"), PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn", REDIS_URL: "" },
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const deadline = Date.now() + 60_000;
  while (!/export FORMSTATE_TOKEN=(\S+)/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`npm start did not come up: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = /development mode on (http:\/\/\S+?) \(/.exec(out)![1];
  return { url, token: /export FORMSTATE_TOKEN=(\S+)/.exec(out)![1], child };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.on("exit", r));
  child.kill("SIGTERM");
  await exited;
}

describe("the development seed", () => {
  it("npm start shows real numbers on the first calls, and a restart finds the same seed", async () => {
    const first = await start();
    const c = createFormstateClient({ baseUrl: first.url, token: first.token });
    const models = (await c.models.listModels({})).models.filter((m) => m.name.startsWith("models/demo-lab/"));
    expect(models.map((m) => [m.name, m.inputPriceMicrosPerMillion, m.outputPriceMicrosPerMillion]).sort()).toEqual(
      DEMO_MODELS.map((m) => [`models/${m.id}`, BigInt(m.input), BigInt(m.output)]).sort(),
    );
    const elig = await c.usage.checkEligibility({ parent: "accounts/demo", check: { case: "modelUsage", value: { model: "models/demo-lab/smart", inputTokens: 10_000n, outputTokens: 2_000n } } });
    expect(elig).toMatchObject({ eligible: true, estimatedCostMicros: 60_000n });
    const rec = await c.usage.recordUsage({ parent: "accounts/demo", requestId: "readme-1", usage: { case: "modelUsage", value: { model: "models/demo-lab/fast", inputTokens: 12_000n, outputTokens: 3_000n } } });
    expect(rec.usageRecord?.costMicros).toBe(3_600n);
    expect(rec.balanceMicros).toBeGreaterThan(0n);
    await c.agents.hireAgent({ parent: "accounts/demo", agent: `agents/${DEMO_AGENT.id}` });
    const inv = await c.agents.invokeAgent({ parent: "accounts/demo", target: { case: "agent", value: `agents/${DEMO_AGENT.id}` }, requestId: "readme-2", operation: "summarize", inputTokens: 1_000n });
    expect(inv.invocation?.costMicros).toBe(2_150n);
    await stop(first.child);

    const second = await start();
    const again = createFormstateClient({ baseUrl: second.url, token: second.token });
    expect((await again.models.listModels({})).models.filter((m) => m.name.startsWith("models/demo-lab/"))).toHaveLength(DEMO_MODELS.length);
    expect((await again.agents.getAgent({ name: `agents/${DEMO_AGENT.id}` })).agent?.pricePerInvocationMicros).toBe(2_000n);
    await stop(second.child);
  }, 120_000);

  it("seeding concurrently or again creates nothing twice", async () => {
    ts = await startTestServer();
    await ts.app.accounts.ensure("demo", "dev-admin", "Demo");
    await Promise.all([seedDemoCatalog(ts.app, "demo", "dev-admin"), seedDemoCatalog(ts.app, "demo", "dev-admin")]);
    await seedDemoCatalog(ts.app, "demo", "dev-admin");
    const n = await ts.app.database.db.selectFrom("model").select((eb) => eb.fn.countAll<number>().as("n")).where("owner_project", "=", "demo").executeTakeFirstOrThrow();
    expect(Number(n.n)).toBe(DEMO_MODELS.length);
    const prices = await ts.app.database.db.selectFrom("model_price").select("model_id").execute();
    expect(prices).toHaveLength(DEMO_MODELS.length);
  });
});
