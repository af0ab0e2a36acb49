/**
 * Development start of several instances at once on a fresh store: all
 * three come up (migrations and the demo seed are idempotent under
 * concurrency: no ALREADY_EXISTS accounts/demo, no migration race), on one
 * PostgreSQL schema and on one SQLite file, and the demo account and catalog
 * exist exactly once.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { DEMO_MODELS } from "../../src/seed/demo-catalog.js";
import { bearer } from "../support/test-server.js";
import { Cluster, missingParts } from "./cluster.js";

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  it("needs PostgreSQL and Redis under CI", () => {
    throw new Error(`missing: ${missing}`);
  });
} else if (missing) {
  console.warn(`skipping the concurrent start test: missing ${missing}`);
}

const DEMO = "demo";

describe.skipIf(Boolean(missing))("three instances started at once on a fresh store", () => {
  let cluster: Cluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  async function startThree(c: Cluster) {
    const started = await Promise.allSettled([c.start("one"), c.start("two"), c.start("three")]);
    const failures = started.flatMap((s) => (s.status === "rejected" ? [String(s.reason)] : []));
    expect(failures, failures.join("\n---\n")).toEqual([]);
    const token = await c.token(DEMO, "admin", "dev-admin");
    for (const inst of c.instances) {
      const transport = createGrpcTransport({ baseUrl: inst.url, interceptors: bearer(token) });
      expect((await createClient(AccountService, transport).getAccount({ name: `accounts/${DEMO}` })).account?.name).toBe(`accounts/${DEMO}`);
      const models = await createClient(ModelService, transport).listModels({ pageSize: 100 });
      const demo = models.models.filter((m) => m.name.startsWith("models/demo-lab/"));
      expect(demo.map((m) => m.name).sort()).toEqual(DEMO_MODELS.map((m) => `models/${m.id}`).sort());
    }
  }

  it("on one PostgreSQL schema", async () => {
    cluster = new Cluster({ FORMSTATE_DEV_PROJECT: DEMO });
    await startThree(cluster);
    const { rows } = await cluster.db.query("select count(*)::int as n from account where project_id = $1", [DEMO]);
    expect(rows[0].n).toBe(1);
  }, 180_000);

  it("on one SQLite file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "formstate-sqlite-start-"));
    try {
      cluster = new Cluster({ FORMSTATE_DEV_PROJECT: DEMO, DATABASE_URL: join(dir, "formstate.db") });
      await startThree(cluster);
      const db = new Sqlite(join(dir, "formstate.db"), { readonly: true });
      expect((db.prepare("select count(*) as n from account where project_id = ?").get(DEMO) as { n: number }).n).toBe(1);
      db.close();
    } finally {
      await cluster?.close();
      cluster = undefined;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
