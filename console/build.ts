/**
 * Builds the console in memory with esbuild: `index.html` and one ES module
 * bundle, `console.js`. The Formstate server serves the result at /console/;
 * `write-bundle.ts` writes it to a directory for any static host.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export interface ConsoleFile {
  body: Uint8Array;
  contentType: string;
}

/** File name (relative to the console's root) -> content. */
export type ConsoleBundle = ReadonlyMap<string, ConsoleFile>;

const here = import.meta.dirname;

/** Defined (true) by scripts/build.mjs in the compiled server, which ships the console prebuilt in dist/console/. */
declare const __FORMSTATE_DIST__: boolean | undefined;

export async function buildConsole(options: { minify?: boolean } = {}): Promise<ConsoleBundle> {
  if (typeof __FORMSTATE_DIST__ !== "undefined" && __FORMSTATE_DIST__) return readPrebuilt(join(here, "console"));
  // Loaded on demand: a server that never serves the console never loads esbuild.
  const esbuild = await import("esbuild");
  const result = await esbuild.build({
    entryPoints: [join(here, "main.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: "console.js",
    write: false,
    minify: options.minify ?? true,
    legalComments: "none",
    logLevel: "silent",
  });
  const js = result.outputFiles.find((f) => f.path.endsWith("console.js"));
  if (!js) throw new Error("esbuild produced no console.js");
  const html = await readFile(join(here, "index.html"));
  return new Map<string, ConsoleFile>([
    ["index.html", { body: html, contentType: "text/html; charset=utf-8" }],
    ["console.js", { body: js.contents, contentType: "text/javascript; charset=utf-8" }],
  ]);
}

/** The console scripts/build.mjs wrote beside the compiled server: no esbuild at run time. */
async function readPrebuilt(dir: string): Promise<ConsoleBundle> {
  return new Map<string, ConsoleFile>([
    ["index.html", { body: await readFile(join(dir, "index.html")), contentType: "text/html; charset=utf-8" }],
    ["console.js", { body: await readFile(join(dir, "console.js")), contentType: "text/javascript; charset=utf-8" }],
  ]);
}
