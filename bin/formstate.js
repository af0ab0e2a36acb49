#!/usr/bin/env node
// The `formstate` command. Runs the compiled CLI (dist/cli.js, built by `npm install`) in this very
// process: no wrapper, so signals reach `formstate serve` directly. In a checkout that was never built,
// it falls back to the TypeScript source through tsx's in-process loader (a development dependency).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dist = new URL("../dist/cli.js", import.meta.url);
if (existsSync(fileURLToPath(dist))) {
  await import(dist.href);
} else {
  let register;
  try {
    ({ register } = await import("tsx/esm/api"));
  } catch {
    process.stderr.write("formstate: dist/cli.js is missing: run `npm run build` (or `npm install`) first\n");
    process.exit(1);
  }
  register();
  await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
