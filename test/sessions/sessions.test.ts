/**
 * Session control against a real server: identity-provider tokens tracked by
 * `sid`, wallet tokens by their session; revoking one session or all of a
 * subject's takes effect on the next call; users manage their own sessions,
 * admins everyone's; a plan's session limit revokes the oldest.
 */
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService, SessionKind } from "../../gen/formstate/v1/account_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";
import { ethWallet, walletToken } from "../support/wallets.js";

// Free keeps its defaults but allows 2 concurrent sessions per user, to test the limit.
const plans = new Plans(defaultPlans.map((p) => (p.id === "free" ? { ...p, sessionLimit: 2 } : { ...p })));
const clock = new ManualClock(Date.now());
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { clock, plans });
});
afterAll(async () => {
  await ts?.close();
});

const sign = (projectId: string, subject: string, role: "admin" | "developer" | "user", sessionId: string) =>
  ts.app.devIssuer!.sign({ projectId, subject, role, sessionId });
const accountsAs = (token: string) => createClient(AccountService, ts.grpc(token));

async function newAccount(projectId: string) {
  const admin = await sign(projectId, `${projectId}-admin`, "admin", `${projectId}-admin-s1`);
  await accountsAs(admin).createAccount({ account: {} });
  // Past the plan's limit, admins need room for their own sessions in these tests.
  return admin;
}

describe("identity-provider sessions", () => {
  it("lists the caller's sessions and revokes one: its tokens fail on the next call, others keep working", async () => {
    await newAccount("one");
    const s1 = await sign("one", "alice", "user", "laptop");
    const s2 = await sign("one", "alice", "user", "phone");
    await accountsAs(s1).getAccount({ name: "accounts/one" });
    clock.advance(1);
    await accountsAs(s2).getAccount({ name: "accounts/one" });
    const { sessions } = await accountsAs(s1).listSessions({ parent: "accounts/one" });
    expect(sessions.map((s) => [s.kind, s.subject])).toEqual([
      [SessionKind.IDP_TOKEN, "alice"],
      [SessionKind.IDP_TOKEN, "alice"],
    ]);
    // Most recently seen first: the phone.
    const phone = sessions[0];
    await accountsAs(s1).revokeSession({ name: phone.name });
    await expectCode(accountsAs(s2).getAccount({ name: "accounts/one" }), Code.Unauthenticated, /this session was revoked; sign in again/);
    await accountsAs(s1).getAccount({ name: "accounts/one" });
    const all = await accountsAs(s1).listSessions({ parent: "accounts/one", showInactive: true });
    expect(all.sessions.find((s) => s.name === phone.name)?.revokeTime).toBeDefined();
    expect((await accountsAs(s1).listSessions({ parent: "accounts/one" })).sessions).toHaveLength(1);
  });

  it("revoking all of a user's sessions fails every token issued before, and not those issued after", async () => {
    await newAccount("all");
    const old1 = await sign("all", "bob", "user", "a");
    const old2 = await sign("all", "bob", "user", "b");
    await accountsAs(old1).getAccount({ name: "accounts/all" });
    const { revokedCount } = await accountsAs(old2).revokeAllSessions({ parent: "accounts/all" });
    // a, and b (tracked by this very call); the cut-off also covers tokens never seen.
    expect(revokedCount).toBe(2);
    const unseen = await sign("all", "bob", "user", "never-used");
    await expectCode(accountsAs(old1).getAccount({ name: "accounts/all" }), Code.Unauthenticated, /sessions of bob were revoked .*; sign in again/);
    await expectCode(accountsAs(old2).getAccount({ name: "accounts/all" }), Code.Unauthenticated, /sessions of bob were revoked/);
    clock.advance(1_000);
    await expectCode(accountsAs(unseen).getAccount({ name: "accounts/all" }), Code.Unauthenticated, /sessions of bob were revoked/);
    const fresh = await sign("all", "bob", "user", "c");
    await accountsAs(fresh).getAccount({ name: "accounts/all" });
  });

  it("users cannot see or revoke others' sessions; admins can", async () => {
    const admin = await newAccount("others");
    const carol = await sign("others", "carol", "user", "c1");
    const dave = await sign("others", "dave", "user", "d1");
    await accountsAs(carol).getAccount({ name: "accounts/others" });
    await accountsAs(dave).getAccount({ name: "accounts/others" });
    const carolSession = (await accountsAs(carol).listSessions({ parent: "accounts/others" })).sessions[0];
    expect((await accountsAs(dave).listSessions({ parent: "accounts/others" })).sessions.map((s) => s.subject)).toEqual(["dave"]);
    await expectCode(accountsAs(dave).revokeSession({ name: carolSession.name }), Code.NotFound);
    await expectCode(accountsAs(dave).revokeAllSessions({ parent: "accounts/others", subject: "carol" }), Code.PermissionDenied, /only admins/);
    const seen = (await accountsAs(admin).listSessions({ parent: "accounts/others" })).sessions.map((s) => s.subject);
    expect(seen).toEqual(expect.arrayContaining(["carol", "dave", "others-admin"]));
    await accountsAs(admin).revokeSession({ name: carolSession.name });
    await expectCode(accountsAs(carol).getAccount({ name: "accounts/others" }), Code.Unauthenticated);
    // Another project's session is NOT_FOUND, a malformed name INVALID_ARGUMENT.
    const stranger = await newAccount("stranger");
    await expectCode(accountsAs(stranger).revokeSession({ name: carolSession.name }), Code.NotFound);
    await expectCode(accountsAs(admin).revokeSession({ name: "sessions/x" }), Code.InvalidArgument);
  });

  it("a plan's session limit revokes the oldest session when a new one starts", async () => {
    await newAccount("limit");
    const tokens = [];
    for (const sid of ["first", "second", "third"]) {
      const t = await sign("limit", "erin", "user", sid);
      await accountsAs(t).getAccount({ name: "accounts/limit" });
      tokens.push(t);
      clock.advance(1);
    }
    await expectCode(accountsAs(tokens[0]).getAccount({ name: "accounts/limit" }), Code.Unauthenticated, /revoked/);
    await accountsAs(tokens[1]).getAccount({ name: "accounts/limit" });
    await accountsAs(tokens[2]).getAccount({ name: "accounts/limit" });
    expect((await accountsAs(tokens[2]).listSessions({ parent: "accounts/limit" })).sessions).toHaveLength(2);
  });
});

describe("wallet sessions", () => {
  it("a wallet token's session is listed with its budget, and revoking it (or all of the wallet's) fails its tokens at once", async () => {
    const admin = await newAccount("wallet-s");
    const w = ethWallet();
    const accounts = accountsAs(admin);
    const { challenge } = await accounts.createWalletChallenge({ parent: "accounts/wallet-s", accountId: w.accountId });
    const { binding } = await accounts.bindWallet({ parent: "accounts/wallet-s", accountId: w.accountId, nonce: challenge!.nonce, signature: w.signMessage(challenge!.message) });
    const iat = Math.floor(clock.now() / 1000);
    const t1 = walletToken(w, { iat, exp: iat + 3600, scope: "admin", sid: "agent-run-1", budget: 9_000 });
    const t1b = walletToken(w, { iat, exp: iat + 3600, scope: "admin", sid: "agent-run-1", budget: 9_000, jti: "again" });
    const t2 = walletToken(w, { iat, exp: iat + 3600, scope: "admin", sid: "agent-run-2" });
    await accountsAs(t1).getAccount({ name: "accounts/wallet-s" });
    await accountsAs(t2).getAccount({ name: "accounts/wallet-s" });
    const { sessions } = await accounts.listSessions({ parent: "accounts/wallet-s" });
    const walletSessions = sessions.filter((s) => s.kind === SessionKind.WALLET_TOKEN);
    expect(walletSessions).toHaveLength(2);
    expect(walletSessions.every((s) => s.subject === binding!.accountId)).toBe(true);
    const run1 = (await accountsAs(t1).listSessions({ parent: "accounts/wallet-s" })).sessions.find((s) => s.budgetMicros === 9_000n);
    expect(run1).toBeDefined();
    // The wallet revokes its own session 1: both tokens of that session fail, session 2 works.
    await accountsAs(t2).revokeSession({ name: run1!.name });
    await expectCode(accountsAs(t1).getAccount({ name: "accounts/wallet-s" }), Code.Unauthenticated, /session was revoked/);
    await expectCode(accountsAs(t1b).getAccount({ name: "accounts/wallet-s" }), Code.Unauthenticated, /session was revoked/);
    await accountsAs(t2).getAccount({ name: "accounts/wallet-s" });
    // The account's admin revokes all of the wallet's sessions.
    await accounts.revokeAllSessions({ parent: "accounts/wallet-s", subject: binding!.accountId });
    await expectCode(accountsAs(t2).getAccount({ name: "accounts/wallet-s" }), Code.Unauthenticated, /were revoked/);
  });
});
