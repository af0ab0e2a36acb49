/**
 * docs/buf-curl.md works as written: its shell blocks run in order, in one
 * bash with `set -euo pipefail`, against a real development server (the
 * `demo` project seeded as `npm start` seeds it, the dev token it prints).
 * Blocks preceded by `<!-- not run ... -->` are the ones that start the
 * server and set FORMSTATE_URL / FORMSTATE_TOKEN, which this test does.
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startTestServer } from "../support/test-server.js";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");

/** The doc's runnable ```sh blocks, in order. */
export function runnableBlocks(markdown: string): string[] {
  const blocks: string[] = [];
  for (const m of markdown.matchAll(/(<!-- not run[^>]*-->\n)?```sh\n([\s\S]*?)```/g)) if (!m[1]) blocks.push(m[2]);
  return blocks;
}

const jqMissing = await run("sh", ["-c", "command -v jq"]).then(
  () => undefined,
  () => "jq is missing: install it with `apt-get install -y jq`",
);
if (jqMissing && process.env.CI === "true") {
  describe("docs/buf-curl.md", () => {
    it("needs jq under CI", () => {
      throw new Error(jqMissing);
    });
  });
}

describe.skipIf(Boolean(jqMissing))(`docs/buf-curl.md${jqMissing ? ` (skipped: ${jqMissing})` : ""}`, () => {
  let ts: TestServer;
  let shim: string;
  beforeAll(async () => {
    ts = await startTestServer();
    await ts.app.accounts.ensure("demo", "dev-admin", "Demo project");
    // `npx buf` runs node_modules/.bin/buf; skipping npm's start-up per call saves about a minute.
    shim = mkdtempSync(join(tmpdir(), "formstate-npx-"));
    writeFileSync(join(shim, "npx"), '#!/bin/sh\nexec "$@"\n');
    chmodSync(join(shim, "npx"), 0o755);
  });
  afterAll(async () => {
    await ts?.close();
    if (shim) rmSync(shim, { recursive: true, force: true });
  });

  it("every block runs against a development server and shows what the text says", async () => {
    const blocks = runnableBlocks(readFileSync(join(root, "docs/buf-curl.md"), "utf8"));
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    const script = ["set -euo pipefail", ...blocks].join("\n");
    const runScript = async () => run("bash", ["-c", script], {
      cwd: root,
      maxBuffer: 16 << 20,
      env: {
        ...process.env,
        PATH: `${shim}:${join(root, "node_modules/.bin")}:${process.env.PATH}`,
        FORMSTATE_URL: ts.url,
        FORMSTATE_TOKEN: await ts.token({ projectId: "demo", role: "admin", subject: "dev-admin" }),
        // `npm run token` signs with the same development issuer key.
        FORMSTATE_DATA_DIR: ts.dataDir,
        npm_config_update_notifier: "false",
      },
    });
    const { stdout } = await runScript();
    // Idempotent: a second run on the same server succeeds and charges nothing more (checked below).
    const again = await runScript();
    expect(again.stdout).toContain('"name": "models/demo/chat-small"');
    expect(again.stdout).toContain("already a member");
    // Reflection listed every service.
    for (const s of ["AccountService", "ApiKeyService", "UsageService", "BillingService", "ModelService", "AgentService"]) expect(stdout).toContain(`formstate.v1.${s}`);
    expect(stdout).toContain('"status": "SERVING"');
    // Each service answered.
    expect(stdout).toContain('"displayName": "Demo, renamed"');
    expect(stdout).toContain('"amountMicros": "20000000"');
    expect(stdout).toContain('"name": "models/demo/chat-small"');
    expect(stdout).toContain('"displayName": "walkthrough"');
    expect(stdout).toContain('"requestId": "walkthrough-usage-1"');
    expect(stdout).toContain('"operation": "summarize"');
    // The errors section shows the typed details it promises.
    expect(stdout).toContain('"reason": "LIMIT_REASON_AGENT_SLOTS"');
    expect(stdout).toContain('"reason": "TOKEN_MISSING"');
    expect(stdout).toContain('"statuses"'); // Health/List: every service's status at once
    // 12,000 in x $0.50/M + 3,000 out x $1.50/M = 10,500 micros, recorded once (over both runs).
    const usage = await ts.app.database.db.selectFrom("usage_record").select(["cost_micros"]).where("request_id", "=", "walkthrough-usage-1").execute();
    expect(usage.map((u) => Number(u.cost_micros))).toEqual([10_500]);
  }, 240_000);
});
