/**
 * ListUsageRecords filtered by a rare model in a project with many records:
 * milliseconds per page and the plan SQLite chose, with the filter indexes
 * of migration 0017 and then with their 0003 definition (no record_id at the
 * end: the planner then walks the project's whole time index instead). The
 * query is the one UsageReports builds.
 *
 *   node --import tsx bench/list-filter.ts            # 200,000 records, 10 of the rare model
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Sqlite from "better-sqlite3";
import type { CompiledQuery, KyselyPlugin } from "kysely";
import { openDatabase } from "../src/db/database.js";
import { UsageReports } from "../src/usage/usage-reports.js";

const N = Number(process.env.LIST_FILTER_RECORDS ?? 200_000);
const dir = mkdtempSync(join(tmpdir(), "formstate-list-filter-"));
const file = join(dir, "list.db");
try {
  // The query exactly as UsageReports builds it, captured on a store with the current schema.
  const database = await openDatabase(file, { synchronous: "normal" });
  let query: CompiledQuery | undefined;
  const capture: KyselyPlugin = {
    transformQuery: (args) => ((query ??= database.db.getExecutor().compileQuery(args.node, args.queryId)), args.node),
    transformResult: async (args) => args.result,
  };
  await database.db
    .insertInto("account")
    .values({ project_id: "p", display_name: "", billing_email: "", plan_tier: "free", subscription_status: "none", credit_balance_micros: 0, created_by: "u", create_request_id: null, create_time: 0, update_time: 0 })
    .execute();
  await new UsageReports({ ...database, db: database.db.withPlugin(capture) }, { now: () => 0 }).list("p", { model: "models/p/rare" }, 50, "");
  await database.close();

  const db = new Sqlite(file);
  const insert = db.prepare(
    `insert into usage_record (record_id, project_id, request_id, request_namespace, environment, request_hash, kind, model, input_tokens, output_tokens, cost_micros, input_price, output_price, invocation_price, api_key_id, recorded_by_kind, recorded_by, attributes, balance_after_micros, occur_time, create_time)
     values (?, 'p', ?, 'usage', 'live', 'h', 'model', ?, 1, 1, 1, 1, 1, 0, 'k', 'api_key', 'k', '{}', 0, ?, ?)`,
  );
  const rareEvery = N / 10;
  db.transaction(() => {
    for (let i = 0; i < N; i++) insert.run(`r${String(i).padStart(9, "0")}`, `q${i}`, i % rareEvery === 0 ? "models/p/rare" : "models/p/common", i, i);
  })();
  const list = () => db.prepare(query!.sql).all(...(query!.parameters as unknown[]));
  const round = (label: string) => {
    for (let i = 0; i < 3; i++) list();
    const pages = 20;
    const t = performance.now();
    for (let i = 0; i < pages; i++) if (list().length !== 10) throw new Error("the rare model's 10 records were not all listed");
    const ms = (performance.now() - t) / pages;
    const plan = (db.prepare(`explain query plan ${query!.sql}`).all(...(query!.parameters as unknown[])) as { detail: string }[]).map((r) => r.detail).join("; ");
    console.log(`| ${label} | ${ms.toFixed(2)} | ${plan} |`);
  };
  console.log(`list-filter, ${N} records in one project, 10 of the rare model, node ${process.version}, ${new Date().toISOString()}\n`);
  console.log("| filter indexes | ms per page | plan |");
  console.log("|---|---:|---|");
  round("0017: (project_id, model, occur_time, record_id) where model is not null");
  db.exec("drop index usage_record_model; create index usage_record_model on usage_record (project_id, model, occur_time)");
  round("0003: (project_id, model, occur_time)");
  db.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
