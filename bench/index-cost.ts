/**
 * What each index on the metering write tables costs a write: a migrated
 * SQLite store (synchronous=NORMAL), 100-row multi-row inserts into
 * usage_record and credit_transaction as the set-based commit writes them,
 * CPU µs per row with every index, then with each secondary index dropped
 * in turn (recreated after). Counts CPU, not wall time.
 *
 *   node --import tsx bench/index-cost.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import SqliteDatabase from "better-sqlite3";
import { openDatabase } from "../src/db/database.js";

const ROWS = Number(process.env.INDEX_COST_ROWS ?? 20_000);
const dir = mkdtempSync(join(tmpdir(), "formstate-index-cost-"));
const file = join(dir, "i.db");
const migrated = await openDatabase(file, { synchronous: "normal" });
await migrated.close();
const db = new SqliteDatabase(file);
db.pragma("synchronous = NORMAL");
db.exec("insert into account (project_id, display_name, billing_email, plan_tier, subscription_status, credit_balance_micros, created_by, create_time, update_time) values ('p', 'p', '', 'free', 'none', 0, 't', 0, 0)");

/** One row of each table as the set-based commit writes it (row i). */
const rows = {
  usage_record: (i: number): Record<string, unknown> => ({
    record_id: `r${i}`, project_id: "p", request_id: `q${i}`, request_namespace: "usage", environment: "live", request_hash: "h", kind: "model", model: "models/p/m", agent: null, agent_owner: null,
    operation: null, input_tokens: 100, output_tokens: 50, cost_micros: 200, input_price: 1, output_price: 2, invocation_price: 0, api_key_id: null, recorded_by_kind: "api_key", recorded_by: "k",
    authorization_id: null, invocation: null, attributes: "{}", balance_after_micros: 0, occur_time: 1_700_000_000_000 + i * 10, create_time: 1_700_000_000_000 + i * 10,
  }),
  credit_transaction: (i: number): Record<string, unknown> => ({
    tx_id: `t${i}`, project_id: "p", environment: "live", seq: i + 1, kind: "usage_debit", amount_micros: -200, balance_after_micros: 0, idempotency_key: `usage:q${i}`, description: "models/p/m",
    usage_record_id: `r${i}`, authorization_id: null, actor: "k", create_time: 1_700_000_000_000 + i * 10,
  }),
};
type Table = keyof typeof rows;

let offset = 0;
/** CPU µs per row of ROWS rows in 100-row transactions (the table emptied first). */
function cost(table: Table): number {
  const have = new Set((db.prepare(`pragma table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
  const cols = Object.keys(rows[table](0)).filter((c) => have.has(c));
  const row = `(${cols.map(() => "?").join(", ")})`;
  const insert = db.prepare(`insert into ${table} (${cols.join(", ")}) values ${Array.from({ length: 100 }, () => row).join(", ")}`);
  db.exec(`delete from ${table}`);
  const c0 = process.cpuUsage();
  for (let b = 0; b < ROWS; b += 100) {
    const values: unknown[] = [];
    for (let i = 0; i < 100; i++) {
      const r = rows[table](offset + b + i);
      for (const c of cols) values.push(r[c]);
    }
    db.transaction(() => insert.run(values))();
  }
  offset += ROWS;
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / ROWS;
}

console.log(`index-cost, ${ROWS} rows per measurement in 100-row inserts, node ${process.version}, ${new Date().toISOString()}`);
console.log("| table | index | columns | CPU µs per row with it | without it | its cost |");
console.log("|---|---|---|---:|---:|---:|");
for (const table of Object.keys(rows) as Table[]) {
  cost(table); // warm-up
  const withAll = cost(table);
  const indexes = db.prepare("select name, sql from sqlite_master where type = 'index' and tbl_name = ? and sql is not null").all(table) as { name: string; sql: string }[];
  for (const ix of indexes) {
    db.exec(`drop index ${ix.name}`);
    const without = cost(table);
    db.exec(ix.sql);
    const cols = /\((.*)\)/.exec(ix.sql)?.[1] ?? "";
    console.log(`| ${table} | ${ix.name} | ${cols.replace(/"/g, "")} | ${withAll.toFixed(1)} | ${without.toFixed(1)} | ${(withAll - without).toFixed(1)} |`);
  }
}
db.close();
rmSync(dir, { recursive: true, force: true });
