/**
 * The admin CLI as installed: bin/formstate.js running the compiled
 * dist/cli.js, each command a child process against a temporary database.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { App } from "../../src/app.js";
import { loadDevIssuer } from "../../src/auth/dev-issuer.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { BIN as bin, ROOT, alive, childPids, ensureBuilt, waitFor } from "../support/built.js";

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "formstate-cli-"));
const env = { ...process.env, FORMSTATE_DATA_DIR: dir, DATABASE_URL: join(dir, "cli.db"), LOG_LEVEL: "silent" };
// Production with no identity provider configured: what an operator's shell on the database host has.
const production = { ...env, FORMSTATE_ENV: "production", FORMSTATE_JWKS_URL: "", FORMSTATE_JWT_ISSUER: "", FORMSTATE_JWT_AUDIENCE: "" };

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return cliWith(env, ...args);
}

async function cliWith(e: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: e, cwd: tmpdir() });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** A failure is one line on stderr, never a stack trace. */
function expectOneLine(stderr: string): void {
  expect(stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(stderr).not.toMatch(/\s+at .*[(:]\d+/);
}

beforeAll(async () => {
  ensureBuilt();
  expect((await cli("migrate", "--json")).code).toBe(0);
  // An account to work on, made through the same domain code the server uses.
  const app = await App.create(loadConfig(env), { log: createLogger("silent") });
  await app.accounts.ensure("clitest", "owner", "CLI test");
  await app.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each test spawns several CLI processes, each loading the app: with the rest of the suite running
// in parallel on two cores that passes 30 s, so these get more time.
describe("formstate CLI", { timeout: 300_000 }, () => {
  it("prints help with exit 0, and exit 2 for an unknown command", async () => {
    const h = await cli("--help");
    expect(h.code).toBe(0);
    for (const c of ["serve", "migrate", "token", "keys", "credits", "accounts"]) expect(h.stdout).toMatch(new RegExp(`\\n  ${c}\\b`));
    expect(h.stdout).toMatch(/create, list or revoke/);
    expect(h.stdout).toMatch(/Exit codes: 0 ok, 1 failed, 2 bad usage/);
    for (const c of ["keys", "credits", "accounts", "migrate", "token", "serve"]) expect((await cli(c, "--help")).stdout).toMatch(/^Usage: formstate /);
    const unknown = await cli("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe("formstate: unknown command 'frobnicate'\n");
  });

  it("--version prints the package version; help <command> prints that command's help", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) expect(await cli(flag)).toMatchObject({ code: 0, stdout: `${version}\n` });
    const keys = await cli("help", "keys");
    expect(keys.code).toBe(0);
    expect(keys.stdout).toMatch(/^Usage: formstate keys /);
    for (const sub of ["create", "list", "revoke"]) expect(keys.stdout).toContain(sub);
    const create = await cli("help", "keys");
    expect(create.stdout).toContain("--json"); // the global option shows in every command's help
    const grant = await cli("credits", "help", "grant");
    expect(grant.stdout).toMatch(/--amount-micros <n>/);
  });

  it("token --json prints a token the development issuer signed; bad input is one line, exit 2", async () => {
    const r = await cli("token", "--project", "clitest", "--role", "developer", "--subject", "dana", "--ttl", "600", "--json");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { token: string; project: string; role: string; subject: string; expireTime: string };
    expect(out).toMatchObject({ project: "clitest", role: "developer", subject: "dana" });
    const issuer = await loadDevIssuer({ dataDir: dir, issuer: "formstate-dev", audience: "formstate" });
    const { payload } = await jwtVerify(out.token, createLocalJWKSet(issuer.jwks()), { issuer: "formstate-dev", audience: "formstate" });
    expect(payload).toMatchObject({ sub: "dana", project_id: "clitest", role: "developer" });
    expect(new Date(out.expireTime).getTime() / 1000).toBe(payload.exp);
    expect(payload.exp! - payload.iat!).toBe(600);
    // The plain form prints the token alone, for $(formstate token).
    expect((await cli("token", "--project", "clitest")).stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);

    for (const bad of [["--ttl", "abc"], ["--ttl", "0"], ["--role", "root"], ["--project", "Bad Project"], ["--frob"]]) {
      const b = await cli("token", ...bad, "--json");
      expect(b.code, bad.join(" ")).toBe(2);
      expect(b.stdout).toBe("");
      expectOneLine(b.stderr);
      expect(JSON.parse(b.stderr)).toMatchObject({ error: { exitCode: 2, message: expect.any(String) } });
    }
    const plain = await cli("token", "--ttl", "abc");
    expect(plain.stderr).toBe("formstate: --ttl must be whole seconds from 1 to 2592000\n");
  });

  it("migrate creates the database", async () => {
    const r = await cli("migrate", "--json");
    expect(JSON.parse(r.stdout)).toMatchObject({ migrated: true });
    expect(existsSync(join(dir, "cli.db"))).toBe(true);
  });

  it("keys create, list, revoke", async () => {
    const created = await cli("keys", "create", "--project", "clitest", "--name", "deploy", "--scopes", "read,write", "--json");
    expect(created.code).toBe(0);
    const { name, secret } = JSON.parse(created.stdout) as { name: string; secret: string };
    expect(secret).toMatch(/^fs_live_/);
    const listed = JSON.parse((await cli("keys", "list", "--project", "clitest", "--json")).stdout) as Array<{ name: string; status: string; scopes: string[] }>;
    expect(listed).toEqual([expect.objectContaining({ name, status: "active", scopes: ["read", "write"] })]);
    expect(JSON.stringify(listed)).not.toContain(secret);
    const revoked = await cli("keys", "revoke", "--project", "clitest", "--key", name.split("/").pop()!);
    expect(revoked.stdout).toContain(`${name} revoked`);
    expect((JSON.parse((await cli("keys", "list", "--project", "clitest", "--json")).stdout) as Array<{ status: string }>)[0].status).toBe("revoked");
  });

  it("credits grant and accounts show", async () => {
    const g = await cli("credits", "grant", "--project", "clitest", "--amount-micros", "2500000", "--reason", "welcome", "--request-id", "w1", "--json");
    expect(g.code).toBe(0);
    expect(JSON.parse(g.stdout)).toMatchObject({ amountMicros: 2_500_000, balanceMicros: 2_500_000 });
    const again = await cli("credits", "grant", "--project", "clitest", "--amount-micros", "2500000", "--reason", "welcome", "--request-id", "w1", "--json");
    expect(JSON.parse(again.stdout).balanceMicros).toBe(2_500_000);
    const show = JSON.parse((await cli("accounts", "show", "--project", "clitest", "--json")).stdout);
    expect(show).toMatchObject({ name: "accounts/clitest", plan: "free", creditBalanceMicros: 2_500_000, environment: "live", testCreditBalanceMicros: 0, apiKeys: { used: 0, limit: 2 } });
    expect((await cli("accounts", "show", "--project", "clitest")).stdout).toMatch(/plan free, credits 2500000 micro-USD/);
  });

  it("exits 2 for bad usage and 1 for a failure, with a clear message", async () => {
    const noProject = await cli("keys", "create");
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toMatch(/--project <id>' not specified/);
    expectOneLine(noProject.stderr);
    const badAmount = await cli("credits", "grant", "--project", "clitest", "--amount-micros", "-5", "--reason", "x");
    expect(badAmount.code).toBe(2);
    const badScope = await cli("keys", "create", "--project", "clitest", "--scopes", "root");
    expect(badScope.code).toBe(2);
    const missing = await cli("accounts", "show", "--project", "nobody");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/account "accounts\/nobody" not found/);
    expectOneLine(missing.stderr);
    const missingJson = await cli("accounts", "show", "--project", "nobody", "--json");
    expect(missingJson.code).toBe(1);
    expect(JSON.parse(missingJson.stderr)).toEqual({ error: { exitCode: 1, code: "not_found", message: 'account "accounts/nobody" not found' } });
  });

  it("in production, database-only commands run without the identity provider's variables; token is refused", async () => {
    const listed = await cliWith(production, "keys", "list", "--project", "clitest", "--json");
    expect(listed.stderr).toBe("");
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual(expect.any(Array));
    const shown = await cliWith(production, "accounts", "show", "--project", "clitest", "--json");
    expect(JSON.parse(shown.stdout)).toMatchObject({ name: "accounts/clitest" });
    expect((await cliWith(production, "migrate")).code).toBe(0);
    const token = await cliWith(production, "token", "--project", "clitest");
    expect(token.code).toBe(2);
    expect(token.stderr).toMatch(/development issuer is off/);
    expectOneLine(token.stderr);
    // The server itself still demands them, naming each.
    const serve = await cliWith({ ...production, PORT: "0" }, "serve");
    expect(serve.code).toBe(1);
    for (const v of ["FORMSTATE_JWKS_URL", "FORMSTATE_JWT_ISSUER", "FORMSTATE_JWT_AUDIENCE"]) expect(serve.stderr).toContain(v);
  });

  it("serve runs the server in the CLI's own process, which SIGTERM stops", async () => {
    const child = spawn(process.execPath, [bin, "serve"], {
      env: { ...env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info" },
      cwd: tmpdir(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    try {
      await waitFor(() => /"msg":"formstate listening"/.test(out) || child.exitCode !== null, 60_000, "formstate serve to listen");
      const port = Number(new URL(/"url":"([^"]+)"/.exec(out)![1]).port);
      expect(childPids(child.pid!)).toEqual([]); // no second Node process
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      const open = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host: "127.0.0.1", port }, () => (s.destroy(), resolve(true)));
        s.once("error", () => resolve(false));
      });
      expect(open).toBe(false);
    } finally {
      if (alive(child.pid!)) child.kill("SIGKILL");
    }
  });
});
