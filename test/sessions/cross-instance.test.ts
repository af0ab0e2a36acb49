/**
 * Two instances sharing one store and one Redis: a session revoked, all of a
 * subject's sessions revoked, or a wallet binding removed through instance A
 * is refused by instance B on the very next call, although B had just cached
 * it as valid (both run on one frozen clock, so B's cache never expires on its own).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { REDIS_URL, missingParts } from "../scale/cluster.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";
import { solanaWallet, walletToken } from "../support/wallets.js";

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  it("needs PostgreSQL and Redis under CI", () => {
    throw new Error(`missing: ${missing}`);
  });
} else if (missing) {
  console.warn(`skipping the cross-instance session tests: missing ${missing}`);
}

describe.skipIf(Boolean(missing))("session revocation across instances", () => {
  const clock = new ManualClock(Date.now());
  const shared = mkdtempSync(join(tmpdir(), "formstate-xsess-"));
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    // One data dir (same dev-issuer keys), one SQLite file, one Redis prefix; unless the suite runs on PostgreSQL.
    const env: Record<string, string> = { FORMSTATE_DATA_DIR: shared, REDIS_URL, FORMSTATE_REDIS_PREFIX: `test:xsess:${randomBytes(4).toString("hex")}:` };
    if (!/^postgres/.test(process.env.DATABASE_URL ?? "")) env.DATABASE_URL = join(shared, "formstate.db");
    a = await startTestServer(env, { clock });
    b = await startTestServer({ ...env, ...(a.app.config.databaseUrl.startsWith("postgres") && { DATABASE_URL: a.app.config.databaseUrl }) }, { clock });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    rmSync(shared, { recursive: true, force: true });
  });

  it("RevokeSession and RevokeAllSessions on A fail the tokens on B at once", async () => {
    const admin = await a.token({ projectId: "xs", role: "admin", subject: "xs-admin" });
    await createClient(AccountService, a.grpc(admin)).createAccount({ account: {} });
    const user = await a.app.devIssuer!.sign({ projectId: "xs", subject: "ann", role: "user", sessionId: "one" });
    const onB = createClient(AccountService, b.grpc(user));
    await onB.getAccount({ name: "accounts/xs" });
    const onA = createClient(AccountService, a.grpc(user));
    const { sessions } = await onA.listSessions({ parent: "accounts/xs" });
    await onA.revokeSession({ name: sessions[0].name });
    await expectCode(onB.getAccount({ name: "accounts/xs" }), Code.Unauthenticated, /session was revoked/);

    const other = await a.app.devIssuer!.sign({ projectId: "xs", subject: "ben", role: "user", sessionId: "two" });
    const benOnB = createClient(AccountService, b.grpc(other));
    await benOnB.getAccount({ name: "accounts/xs" });
    await createClient(AccountService, a.grpc(admin)).revokeAllSessions({ parent: "accounts/xs", subject: "ben" });
    await expectCode(benOnB.getAccount({ name: "accounts/xs" }), Code.Unauthenticated, /sessions of ben were revoked/);
  });

  it("a wallet binding removed on A fails the wallet's tokens on B at once", async () => {
    const admin = await a.token({ projectId: "xw", role: "admin", subject: "xw-admin" });
    const accounts = createClient(AccountService, a.grpc(admin));
    await accounts.createAccount({ account: {} });
    const w = solanaWallet();
    const { challenge } = await accounts.createWalletChallenge({ parent: "accounts/xw", accountId: w.accountId });
    const { binding } = await accounts.bindWallet({ parent: "accounts/xw", accountId: w.accountId, nonce: challenge!.nonce, signature: w.signMessage(challenge!.message) });
    const iat = Math.floor(clock.now() / 1000);
    const onB = createClient(AccountService, b.grpc(walletToken(w, { iat, exp: iat + 600, scope: "admin" })));
    await onB.getAccount({ name: "accounts/xw" });
    await accounts.deleteWalletBinding({ name: binding!.name });
    await expectCode(onB.getAccount({ name: "accounts/xw" }), Code.Unauthenticated, /not bound/);
  });
});
