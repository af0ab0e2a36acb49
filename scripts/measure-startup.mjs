#!/usr/bin/env node
/**
 * Start-up time to listening, compiled (dist/main.js) against tsx
 * (src/main.ts): `node scripts/measure-startup.mjs [runs]`. Each run spawns
 * the server on port 0 with a data directory already migrated by a warm-up
 * run, times spawn -> the "formstate listening" log line, and stops it with
 * SIGTERM. Prints the median and range of the wall-clock time, and of the CPU
 * time the process tree had used by then (Linux /proc: tsx's esbuild helper
 * processes included), which a loaded machine distorts much less.
 * Run `npm run build` first.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const runs = Number(process.argv[2] ?? 5);
const variants = {
  "dist (node dist/main.js)": ["dist/main.js"],
  "tsx (node --import tsx src/main.ts)": ["--import", "tsx", "src/main.ts"],
};

/** CPU seconds (user + system) used so far by a process and its live descendants. */
function treeCpu(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    let ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean)) ticks += treeCpu(Number(child)) * 100;
    }
    return ticks / 100;
  } catch {
    return 0;
  }
}

function once(args, dataDir) {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, PORT: "0", HOST: "127.0.0.1", FORMSTATE_DATA_DIR: dataDir, LOG_LEVEL: "info", FORMSTATE_ENV: "development" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    let ms;
    let cpu;
    child.stdout.on("data", (d) => {
      out += d;
      if (ms === undefined && out.includes('"msg":"formstate listening"')) {
        ms = performance.now() - started;
        cpu = treeCpu(child.pid) * 1000;
        child.kill("SIGTERM");
      }
    });
    child.once("exit", (code) => (ms === undefined ? reject(new Error(`exited ${code} before listening`)) : resolvePromise({ ms, cpu })));
  });
}

for (const [label, args] of Object.entries(variants)) {
  const dataDir = mkdtempSync(join(tmpdir(), "formstate-startup-"));
  try {
    await once(args, dataDir); // warm-up: creates the database and the dev key
    const results = [];
    for (let i = 0; i < runs; i++) results.push(await once(args, dataDir));
    const summary = (values) => {
      values.sort((a, b) => a - b);
      return `median ${Math.round(values[Math.floor(values.length / 2)])} ms (${Math.round(values[0])}-${Math.round(values.at(-1))})`;
    };
    console.log(`${label}: wall ${summary(results.map((r) => r.ms))}, CPU ${summary(results.map((r) => r.cpu))} (${runs} runs)`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
