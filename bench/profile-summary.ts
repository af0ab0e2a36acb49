/**
 * Summarizes a `node --cpu-prof` profile: self time by function and by area
 * (GC, Connect, Kysely, SQLite, Node internals, Formstate's own src/).
 * Usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [top=30]
 */
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
const top = Number(process.argv[3] ?? 30);
const prof = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
for (let i = 0; i < prof.samples.length; i++) self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
const total = [...self.values()].reduce((a, b) => a + b, 0);

function area(url: string, fn: string): string {
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(idle)" || fn === "(program)") return fn;
  if (url.includes("@connectrpc")) return "connect";
  if (url.includes("kysely")) return "kysely";
  if (url.includes("better-sqlite3")) return "better-sqlite3 (js)";
  if (url.includes("@bufbuild/protobuf")) return "protobuf-es";
  if (url.includes("pino")) return "pino";
  if (url.includes("/src/") && !url.includes("node_modules")) return "formstate src";
  if (url.includes("/gen/")) return "gen";
  if (url.startsWith("node:")) return "node internals";
  if (url === "") return "native/builtin";
  return "other";
}

const fnTotals = new Map<string, number>();
const areaTotals = new Map<string, number>();
for (const [id, t] of self) {
  const n = byId.get(id)!;
  const { functionName, url, lineNumber } = n.callFrame;
  const key = `${functionName || "(anon)"} ${url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(src|bench|gen)\//, "$1/")}:${lineNumber + 1}`;
  fnTotals.set(key, (fnTotals.get(key) ?? 0) + t);
  const a = area(url, functionName);
  areaTotals.set(a, (areaTotals.get(a) ?? 0) + t);
}
// Inclusive time per function (self + callees, each sample counted once per function on its stack).
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const keyOf = (n: Node) => `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(src|bench|gen)\//, "$1/")}:${n.callFrame.lineNumber + 1}`;
const inclusive = new Map<string, number>();
for (const [id, t] of self) {
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = keyOf(byId.get(cur)!);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + t);
  }
}
const pct = (t: number) => `${((t / total) * 100).toFixed(1).padStart(5)}%`;
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
console.log("\nBy area (self time):");
for (const [a, t] of [...areaTotals].sort((x, y) => y[1] - x[1])) console.log(`${pct(t)}  ${a}`);
console.log(`\nTop ${top} functions (self time):`);
for (const [k, t] of [...fnTotals].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
console.log(`\nTop ${top} functions of Formstate's src/ by inclusive time:`);
for (const [k, t] of [...inclusive].filter(([k]) => / src\//.test(k)).sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
const filter = process.argv[4];
if (filter) {
  console.log(`\nInclusive, matching ${filter}:`);
  for (const [k, t] of [...inclusive].filter(([k]) => k.includes(filter)).sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${pct(t)}  ${k}`);
}
