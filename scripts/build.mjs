#!/usr/bin/env node
/**
 * The compiled build: `node scripts/build.mjs [--if-stale] [--outdir dir]`.
 *
 * Bundles our TypeScript (src/, gen/) into plain ES modules under dist/
 * (dist/main.js, the server; dist/cli.js, the `formstate` command; shared
 * chunks) so production runs plain `node` with no TypeScript loader. npm
 * packages stay external and load from node_modules as usual (native
 * better-sqlite3 cannot be bundled anyway). The browser console is built too
 * (dist/console/), so the server never needs esbuild at run time.
 *
 * Run by `prepare` (npm install / npm ci) and, with --if-stale, before
 * `npm start`: it rebuilds only when a source file is newer than the build.
 * Plain .mjs so that it runs before anything is compiled.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { "if-stale": { type: "boolean" }, outdir: { type: "string" }, quiet: { type: "boolean" } } });
const outdir = resolve(values.outdir ?? join(root, "dist"));
const stamp = join(outdir, ".build-stamp");

/** Every input of the build: a change to any of them makes the build stale. */
const INPUTS = ["src", "gen", "console", "package.json", "scripts/build.mjs"];

function newestMtime(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs; // a deleted file changes its directory's mtime
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

function isStale() {
  if (!existsSync(stamp) || !existsSync(join(outdir, "main.js")) || !existsSync(join(outdir, "cli.js"))) return true;
  const built = statSync(stamp).mtimeMs;
  return INPUTS.some((p) => newestMtime(join(root, p)) > built);
}

if (values["if-stale"] && !isStale()) process.exit(0);

// One build at a time (npm start, a test and `npm install` may race): a lock directory, then the
// stale check again, since the build we waited for may have made ours unnecessary.
const lock = `${outdir}.lock`;
const waitUntil = Date.now() + 180_000;
for (;;) {
  try {
    mkdirSync(lock);
    break;
  } catch (err) {
    if (err.code !== "EEXIST") throw err;
    // A lock older than the longest build is left by a killed build.
    if (Date.now() - statSync(lock, { throwIfNoEntry: false })?.mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true });
    if (Date.now() > waitUntil) {
      process.stderr.write(`formstate build: ${lock} is held by another build; remove it if none is running\n`);
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
process.on("exit", () => rmSync(lock, { recursive: true, force: true }));
if (values["if-stale"] && !isStale()) process.exit(0);

let esbuild;
try {
  esbuild = await import("esbuild");
} catch {
  process.stderr.write("formstate build: esbuild is not installed; run `npm install` first\n");
  process.exit(1);
}

const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
const started = performance.now();
// Built aside and swapped in, so a running server never sees a half-written dist/.
const finalDir = outdir;
const staging = `${finalDir}.tmp-${process.pid}`;
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });

try {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: { main: "src/main.ts", cli: "src/cli/main.ts" },
    outdir: staging,
    bundle: true,
    splitting: true, // main.js and cli.js share one copy of the app
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
    sourcemap: "linked",
    chunkNames: "[name]-[hash]", // beside main.js: code reading import.meta.dirname finds dist/ whichever file it lands in
    // Tells console/build.ts to serve the console prebuilt below instead of building it at run time.
    define: { __FORMSTATE_DIST__: "true", __FORMSTATE_VERSION__: JSON.stringify(version) },
    legalComments: "none",
    logLevel: "warning",
  });

  // The browser console, as console/build.ts builds it (keep the two in step).
  const consoleDir = join(staging, "console");
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: ["console/main.ts"],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: join(consoleDir, "console.js"),
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(root, "console/index.html"), join(consoleDir, "index.html"));
} catch (err) {
  // esbuild has already printed the errors with their file and line.
  rmSync(staging, { recursive: true, force: true });
  process.stderr.write(`formstate build failed${err?.errors?.length ? "" : `: ${err instanceof Error ? err.message : String(err)}`}\n`);
  process.exit(1);
}

writeFileSync(join(staging, ".build-stamp"), `${JSON.stringify({ version, builtAt: new Date().toISOString() })}\n`);
const old = `${finalDir}.old-${process.pid}`;
if (existsSync(finalDir)) renameSync(finalDir, old);
renameSync(staging, finalDir);
rmSync(old, { recursive: true, force: true });
if (!values.quiet) process.stderr.write(`formstate build: ${outdir} in ${Math.round(performance.now() - started)} ms\n`);
