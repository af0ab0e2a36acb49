/** The admin CLI, each command run as a child process against a temporary database. */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { App } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";

const run = promisify(execFile);
const bin = join(import.meta.dirname, "../../bin/formstate.js");
const dir = mkdtempSync(join(tmpdir(), "formstate-cli-"));
const env = { ...process.env, FORMSTATE_DATA_DIR: dir, DATABASE_URL: join(dir, "cli.db"), LOG_LEVEL: "silent" };

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env, cwd: tmpdir() });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  expect((await cli("migrate", "--json")).code).toBe(0);
  // An account to work on, made through the same domain code the server uses.
  const app = await App.create(loadConfig(env), { log: createLogger("silent") });
  await app.accounts.ensure("clitest", "owner", "CLI test");
  await app.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Each test spawns several CLI processes, each loading the app through tsx (~3 s of CPU): with the
// rest of the suite running in parallel on two cores that passed 30 s, so these get more time.
describe("formstate CLI", { timeout: 180_000 }, () => {
  it("prints help with exit 0, and exit 2 for an unknown command", async () => {
    const h = await cli("--help");
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/keys create\|list\|revoke/);
    for (const c of ["keys", "credits", "accounts", "migrate"]) expect((await cli(c, "--help")).stdout).toMatch(/usage/);
    expect((await cli("frobnicate")).code).toBe(2);
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
    expect(show).toMatchObject({ name: "accounts/clitest", plan: "free", creditBalanceMicros: 2_500_000, apiKeys: { used: 0, limit: 2 } });
    expect((await cli("accounts", "show", "--project", "clitest")).stdout).toMatch(/plan free, credits 2500000 micro-USD/);
  });

  it("exits 2 for bad usage and 1 for a failure, with a clear message", async () => {
    const noProject = await cli("keys", "create");
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toMatch(/--project is required/);
    const badAmount = await cli("credits", "grant", "--project", "clitest", "--amount-micros", "-5", "--reason", "x");
    expect(badAmount.code).toBe(2);
    const badScope = await cli("keys", "create", "--project", "clitest", "--scopes", "root");
    expect(badScope.code).toBe(2);
    const missing = await cli("accounts", "show", "--project", "nobody");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/account "accounts\/nobody" not found/);
  });
});
