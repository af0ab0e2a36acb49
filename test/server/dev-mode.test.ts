/**
 * Development mode as a user meets it: `npm start` prints a token that
 * works, `npm run token` mints more, production refuses both, and a bad
 * variable stops start-up with a clear message.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";
import { Code } from "@connectrpc/connect";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");
const dirs: string[] = [];
let ts: TestServer | undefined;
afterAll(async () => {
  await ts?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function node(args: string[], env: Record<string, string>) {
  return run(process.execPath, ["--import", "tsx", ...args], { cwd: root, env: { ...process.env, ...env } });
}

describe("npm run token", () => {
  it("mints a token the server accepts, with the key file kept private", async () => {
    ts = await startTestServer();
    const { stdout } = await node(["src/cli/main.ts", "token", "--project", "demo", "--role", "developer", "--subject", "dana"], { FORMSTATE_DATA_DIR: ts.dataDir });
    const token = stdout.trim();
    expect(token.split(".")).toHaveLength(3);
    expect(statSync(join(ts.dataDir, "dev-issuer-key.json")).mode & 0o777).toBe(0o600);
    await ts.app.accounts.ensure("demo", "dev-admin", "Demo");
    const client = ts.client(AccountService, ts.grpc(token));
    expect((await client.getAccount({ name: "accounts/demo" })).account?.name).toBe("accounts/demo");
    // A developer, as asked: may add a user but not change roles.
    await client.addMember({ parent: "accounts/demo", member: { userId: "u1", role: Role.USER } });
    await expectCode(client.updateMember({ member: { name: "accounts/demo/members/u1", role: Role.ADMIN }, updateMask: { paths: ["role"] } }), Code.PermissionDenied);
  });

  it("refuses in production and rejects bad arguments with exit code 2", async () => {
    const prod = await node(["src/cli/main.ts", "token", "--project", "demo"], {
      FORMSTATE_ENV: "production",
      FORMSTATE_JWKS_URL: "https://idp.example/jwks",
      FORMSTATE_JWT_ISSUER: "x",
      FORMSTATE_JWT_AUDIENCE: "y",
    }).catch((e: { code: number; stderr: string }) => e);
    expect(prod).toMatchObject({ code: 2 });
    expect((prod as { stderr: string }).stderr).toMatch(/development issuer is off/);
    const bad = await node(["src/cli/main.ts", "token", "--project", "Bad Project"], { FORMSTATE_DATA_DIR: mkdtempSync(join(tmpdir(), "fs-tok-")) }).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2 });
    expect((bad as { stderr: string }).stderr).toMatch(/--project/);
  });
});

describe("start-up", () => {
  it("stops with one clear message naming each bad variable", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-bad-"));
    dirs.push(dir);
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: root,
      env: { ...process.env, FORMSTATE_DATA_DIR: dir, PORT: "99999", FORMSTATE_ENV: "production" },
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise((r) => child.on("exit", r));
    expect(code).toBe(1);
    for (const v of ["PORT", "FORMSTATE_JWKS_URL", "FORMSTATE_JWT_ISSUER", "FORMSTATE_JWT_AUDIENCE"]) expect(stderr).toContain(v);
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});
