#!/usr/bin/env node
// The `formstate` command: runs the TypeScript CLI through tsx from wherever it is invoked.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../src/cli/formstate.ts", import.meta.url));
const r = spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), cli, ...process.argv.slice(2)], { stdio: "inherit" });
process.exit(r.status ?? 1);
