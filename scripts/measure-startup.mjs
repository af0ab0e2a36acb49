#!/usr/bin/env node
/**
 * Start-up time to listening, compiled (dist/main.js) against tsx
 * (src/main.ts): `node scripts/measure-startup.mjs [runs]`. Each run spawns
 * the server on port 0 with a data directory already migrated by a warm-up
 * run, times spawn -> the "formstate listening" log line, and stops it with
 * SIGTERM. Prints min / median / max per variant. Run `npm run build` first.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const runs = Number(process.argv[2] ?? 5);
const variants = {
  "dist (node dist/main.js)": ["dist/main.js"],
  "tsx (node --import tsx src/main.ts)": ["--import", "tsx", "src/main.ts"],
};

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
    child.stdout.on("data", (d) => {
      out += d;
      if (ms === undefined && out.includes('"msg":"formstate listening"')) {
        ms = performance.now() - started;
        child.kill("SIGTERM");
      }
    });
    child.once("exit", (code) => (ms === undefined ? reject(new Error(`exited ${code} before listening`)) : resolvePromise(ms)));
  });
}

for (const [label, args] of Object.entries(variants)) {
  const dataDir = mkdtempSync(join(tmpdir(), "formstate-startup-"));
  try {
    await once(args, dataDir); // warm-up: creates the database and the dev key
    const times = [];
    for (let i = 0; i < runs; i++) times.push(await once(args, dataDir));
    times.sort((a, b) => a - b);
    const f = (n) => `${Math.round(n)} ms`;
    console.log(`${label}: median ${f(times[Math.floor(times.length / 2)])}, min ${f(times[0])}, max ${f(times.at(-1))} (${runs} runs)`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
