/**
 * @formstate/client as a user gets it: built, packed with `npm pack`,
 * installed from the tarball into a scratch project outside the repository
 * (its dependencies from the registry), then used against a running server
 * from plain `node` (no tsx, no TypeScript) and from a browser bundle
 * (esbuild of the scratch project's browser entry) in headless Chromium over
 * Connect-Web. Also: only @bufbuild/protobuf and Connect come with it, and
 * its .d.ts type-check a TypeScript consumer.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as esbuild from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Browser, CHROMIUM_MISSING, launchChromium } from "../console/chromium.js";
import { ROOT } from "../support/built.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const run = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), "formstate-client-scratch-"));
const PROJECT = "pkgclient";
let ts: TestServer;
let token: string;

/** The scratch project's Node entry: every line plain JavaScript that Node 20 runs as is. */
const NODE_ENTRY = `
import { createFormstateClient, limitAdvice } from "@formstate/client";
const { BASE_URL, TOKEN, PROJECT } = process.env;
const client = createFormstateClient({ baseUrl: BASE_URL, token: TOKEN, project: PROJECT });
const account = await client.accounts.getAccount({ name: "accounts/" + PROJECT });
const task = await client.scopedKey({ ttlMs: 60000, spendCapMicros: 1000n, methods: ["/formstate.v1.AccountService/GetAccount"] });
let during, after;
try {
  during = (await task.client.accounts.getAccount({ name: "accounts/" + PROJECT })).account.name;
} finally {
  await task.dispose(); // Node 20 has no \`await using\`: dispose() in finally
}
try {
  await task.client.accounts.getAccount({ name: "accounts/" + PROJECT });
  after = "still works";
} catch (err) {
  after = err.code;
}
console.log(JSON.stringify({ name: account.account.name, keyPrefix: task.secret.slice(0, 8), during, after, advice: limitAdvice(new Error("x")) ?? null }));
`;

/** The scratch project's browser entry, bundled by esbuild as any web app would be. */
const BROWSER_ENTRY = `
import { createFormstateClient } from "@formstate/client";
window.runFormstate = async (baseUrl, token, project) => {
  const client = createFormstateClient({ baseUrl, token, project });
  const account = await client.accounts.getAccount({ name: "accounts/" + project });
  const task = await client.scopedKey({ ttlMs: 60000, spendCapMicros: 1000n, methods: ["/formstate.v1.AccountService/GetAccount"] });
  let during, after;
  try {
    during = (await task.client.accounts.getAccount({ name: "accounts/" + project })).account.name;
  } finally {
    await task.dispose();
  }
  try {
    await task.client.accounts.getAccount({ name: "accounts/" + project });
    after = "still works";
  } catch (err) {
    after = err.code;
  }
  return { name: account.account.name, keyPrefix: task.secret.slice(0, 8), during, after };
};
`;

/** A TypeScript consumer: the package's .d.ts must carry the types through. */
const TS_CONSUMER = `
import { createFormstateClient, type ScopedKey, type FormstateClient } from "@formstate/client";
import { createFormstateClient as web } from "@formstate/client/web";
const c: FormstateClient = createFormstateClient({ baseUrl: "http://127.0.0.1:1", apiKey: "k", project: "p" });
const w: FormstateClient = web({ baseUrl: "http://127.0.0.1:1", token: "t" });
export async function f(): Promise<string | undefined> {
  const task: ScopedKey = await c.scopedKey({ ttlMs: 1, spendCapMicros: 1n, methods: [] });
  await task.dispose();
  const r = await w.accounts.getAccount({ name: "accounts/p" });
  return r.account?.displayName;
}
`;

beforeAll(async () => {
  // Build and pack as a publisher would (prepack builds), into the scratch directory.
  const packed = await run("npm", ["pack", "--json", "--pack-destination", scratch], { cwd: join(ROOT, "packages/client") });
  const [{ filename }] = JSON.parse(packed.stdout) as Array<{ filename: string }>;
  writeFileSync(join(scratch, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module", dependencies: { "@formstate/client": `file:./${filename}` } }));
  writeFileSync(join(scratch, "node-entry.mjs"), NODE_ENTRY);
  writeFileSync(join(scratch, "browser-entry.mjs"), BROWSER_ENTRY);
  writeFileSync(join(scratch, "consumer.ts"), TS_CONSUMER);
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: scratch });

  ts = await startTestServer();
  token = await ts.token({ projectId: PROJECT, role: "admin", subject: "pkg-admin" });
  await ts.app.accounts.ensure(PROJECT, "pkg-admin", "Package client");
}, 300_000);
afterAll(async () => {
  await ts?.close();
  rmSync(scratch, { recursive: true, force: true });
});

describe("@formstate/client, packed and installed outside the repository", { timeout: 180_000 }, () => {
  it("brings only @bufbuild/protobuf and Connect, and ships ESM with .d.ts", () => {
    const installed = readdirSync(join(scratch, "node_modules"))
      .filter((d) => !d.startsWith("."))
      .flatMap((d) => (d.startsWith("@") ? readdirSync(join(scratch, "node_modules", d)).map((s) => `${d}/${s}`) : [d]))
      .sort();
    expect(installed).toEqual(["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node", "@connectrpc/connect-web", "@formstate/client"]);
    const pkg = JSON.parse(readFileSync(join(scratch, "node_modules/@formstate/client/package.json"), "utf8")) as { engines: { node: string }; type: string };
    expect(pkg.type).toBe("module");
    expect(pkg.engines.node).toMatch(/^>=20/);
    const files = readdirSync(join(scratch, "node_modules/@formstate/client/dist/src"));
    expect(files).toEqual(expect.arrayContaining(["node.js", "node.d.ts", "web.js", "web.d.ts", "common.js", "common.d.ts"]));
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
  });

  it("type-checks a TypeScript consumer against its .d.ts", async () => {
    const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
    // A browser-only consumer: no @types/node; AsyncDisposable comes from the esnext.disposable lib.
    const compilerOptions = { noEmit: true, strict: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", lib: ["es2022", "dom", "esnext.disposable"], types: [], skipLibCheck: true };
    writeFileSync(join(scratch, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["consumer.ts"] }));
    const r = await run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: scratch }).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
    expect(r.stdout).toBe("");
  });

  it("calls the server from plain node (gRPC over HTTP/2), with dispose() revoking the scoped key", async () => {
    const { stdout } = await run(process.execPath, ["node-entry.mjs"], { cwd: scratch, env: { ...process.env, BASE_URL: ts.url, TOKEN: token, PROJECT }, timeout: 60_000 });
    expect(JSON.parse(stdout)).toEqual({ name: `accounts/${PROJECT}`, keyPrefix: "fs_live_", during: `accounts/${PROJECT}`, after: 16, advice: null }); // 16: UNAUTHENTICATED
  });

  describe.skipIf(Boolean(CHROMIUM_MISSING) && process.env.CI !== "true")("in Chromium", () => {
    let browser: Browser | undefined;
    let host: http.Server | undefined;
    afterAll(async () => {
      await browser?.close();
      host?.closeAllConnections();
      host?.close();
    });

    it("calls the server from a browser bundle over Connect-Web, with dispose() revoking the scoped key", async () => {
      if (CHROMIUM_MISSING) throw new Error(CHROMIUM_MISSING);
      const bundle = await esbuild.build({
        absWorkingDir: scratch,
        entryPoints: ["browser-entry.mjs"],
        bundle: true,
        format: "esm",
        platform: "browser",
        target: "es2022",
        write: false,
        logLevel: "silent",
      });
      const js = bundle.outputFiles[0].text;
      // The browser build must not pull the Node transport in.
      expect(js).not.toContain("node:http2");
      mkdirSync(join(scratch, "www"), { recursive: true });
      const page = '<!doctype html><meta charset="utf-8"><script type="module" src="/app.js"></script>';
      // The page comes from its own origin (another loopback port): the API call is cross-origin, as in production.
      host = http.createServer((req, res) => {
        if (req.url === "/app.js") return void res.writeHead(200, { "content-type": "text/javascript" }).end(js);
        res.writeHead(200, { "content-type": "text/html" }).end(page);
      });
      await new Promise<void>((resolve) => host!.listen(0, "127.0.0.1", resolve));
      const origin = `http://127.0.0.1:${(host.address() as AddressInfo).port}`;

      browser = await launchChromium();
      const tab = await browser.context.newPage();
      await tab.goto(`${origin}/`);
      await tab.waitForFunction(() => typeof (window as unknown as { runFormstate?: unknown }).runFormstate === "function", undefined, { timeout: 30_000 });
      const result = await tab.evaluate(
        ([baseUrl, t, project]) => (window as unknown as { runFormstate: (b: string, t: string, p: string) => Promise<unknown> }).runFormstate(baseUrl, t, project),
        [ts.url, token, PROJECT] as const,
      );
      expect(result).toEqual({ name: `accounts/${PROJECT}`, keyPrefix: "fs_live_", during: `accounts/${PROJECT}`, after: 16 });
    });
  });
});
