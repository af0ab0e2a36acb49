/**
 * AccountService end to end: a real server, real tokens from the dev issuer,
 * Connect's gRPC transport over HTTP/2.
 */
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { PlanTier, SubscriptionStatus } from "../../gen/formstate/v1/common_pb.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let ts: TestServer;
const as = async (projectId: string, role: "admin" | "developer" | "user" | undefined, subject?: string) =>
  ts.client(AccountService, ts.grpc(await ts.token({ projectId, role, subject })));

beforeAll(async () => {
  ts = await startTestServer();
});
afterAll(async () => {
  await ts?.close();
});

describe("CreateAccount and GetAccount", () => {
  it("creates the account of the token's project with the caller as first admin", async () => {
    const alice = await as("acme", undefined, "alice");
    const { account } = await alice.createAccount({ account: { displayName: "Acme", billingEmail: "billing@acme.test" } });
    expect(account?.name).toBe("accounts/acme");
    expect(account?.projectId).toBe("acme");
    expect(account?.displayName).toBe("Acme");
    expect(account?.planTier).toBe(PlanTier.FREE);
    expect(account?.subscriptionStatus).toBe(SubscriptionStatus.NONE);
    expect(account?.creditBalanceMicros).toBe(0n);
    expect(account?.agentSlots).toMatchObject({ used: 0n, limit: 1n, unlimited: false });
    expect(account?.apiKeys).toMatchObject({ used: 0n, limit: 2n, unlimited: false });

    // Alice's token has no role claim: the members table now makes her admin.
    const { members } = await alice.listMembers({ parent: "accounts/acme" });
    expect(members.map((m) => [m.userId, m.role])).toEqual([["alice", Role.ADMIN]]);
    await alice.updateAccount({ account: { name: "accounts/acme", displayName: "Acme Inc" }, updateMask: { paths: ["display_name"] } });
    const got = await alice.getAccount({ name: "accounts/acme" });
    expect(got.account?.displayName).toBe("Acme Inc");
    expect(got.account?.billingEmail).toBe("billing@acme.test");
  });

  it("answers ALREADY_EXISTS to a second create, but a retry with the same request_id gets the account", async () => {
    const bob = await as("retry", undefined, "bob");
    const first = await bob.createAccount({ account: { displayName: "R" }, requestId: "req-1" });
    const again = await bob.createAccount({ account: { displayName: "R" }, requestId: "req-1" });
    expect(again.account?.createTime).toEqual(first.account?.createTime);
    await expectCode(bob.createAccount({ account: {}, requestId: "req-2" }), Code.AlreadyExists, /accounts\/retry/);
    const other = await as("retry", "admin", "carol");
    await expectCode(other.createAccount({ account: {}, requestId: "req-1" }), Code.AlreadyExists);
  });

  it("NOT_FOUND for a project without an account", async () => {
    const c = await as("empty", "admin");
    await expectCode(c.getAccount({ name: "accounts/empty" }), Code.NotFound, /accounts\/empty/);
  });
});

describe("project scoping", () => {
  it("a token for project A never reads project B, with the same answer whether B exists or not", async () => {
    await (await as("bee", "admin", "bee-admin")).createAccount({ account: { displayName: "B" } });
    const a = await as("aye", "admin");
    await a.createAccount({ account: {} });
    const existing = await expectCode(a.getAccount({ name: "accounts/bee" }), Code.NotFound);
    const missing = await expectCode(a.getAccount({ name: "accounts/nope" }), Code.NotFound);
    expect(existing.rawMessage.replace("bee", "X")).toBe(missing.rawMessage.replace("nope", "X"));
    await expectCode(a.listMembers({ parent: "accounts/bee" }), Code.NotFound);
    await expectCode(a.updateAccount({ account: { name: "accounts/bee", displayName: "pwned" }, updateMask: { paths: ["display_name"] } }), Code.NotFound);
    await expectCode(a.addMember({ parent: "accounts/bee", member: { userId: "mallory", role: Role.ADMIN } }), Code.NotFound);
    await expectCode(a.updateMember({ member: { name: "accounts/bee/members/bee-admin", role: Role.USER }, updateMask: { paths: ["role"] } }), Code.NotFound);
    await expectCode(a.removeMember({ name: "accounts/bee/members/bee-admin" }), Code.NotFound);
    const b = await as("bee", "admin", "bee-admin");
    expect((await b.getAccount({ name: "accounts/bee" })).account?.displayName).toBe("B");
    expect((await b.listMembers({ parent: "accounts/bee" })).members.map((m) => m.userId)).toEqual(["bee-admin"]);
  });
});

describe("roles", () => {
  beforeAll(async () => {
    const admin = await as("roles", "admin", "root");
    await admin.createAccount({ account: {} });
  });

  it("a user reads but cannot change the account or its members", async () => {
    const user = await as("roles", "user");
    expect((await user.getAccount({ name: "accounts/roles" })).account?.name).toBe("accounts/roles");
    await expectCode(user.updateAccount({ account: { name: "accounts/roles", displayName: "x" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /needs role admin/);
    await expectCode(user.addMember({ parent: "accounts/roles", member: { userId: "u2", role: Role.USER } }), Code.PermissionDenied, /needs role developer/);
    await expectCode(user.removeMember({ name: "accounts/roles/members/root" }), Code.PermissionDenied);
  });

  it("a developer adds users and developers but cannot add admins or change roles", async () => {
    const dev = await as("roles", "developer");
    const { member } = await dev.addMember({ parent: "accounts/roles", member: { userId: "dana", role: Role.DEVELOPER } });
    expect(member?.name).toBe("accounts/roles/members/dana");
    await expectCode(dev.addMember({ parent: "accounts/roles", member: { userId: "eve", role: Role.ADMIN } }), Code.PermissionDenied, /cannot add a member with role admin/);
    await expectCode(dev.updateMember({ member: { name: "accounts/roles/members/dana", role: Role.ADMIN }, updateMask: { paths: ["role"] } }), Code.PermissionDenied);
  });

  it("an admin changes roles and removes members, but never the last admin", async () => {
    const admin = await as("roles", "admin", "root");
    await admin.addMember({ parent: "accounts/roles", member: { userId: "frank", role: Role.USER } });
    await expectCode(admin.addMember({ parent: "accounts/roles", member: { userId: "frank", role: Role.USER } }), Code.AlreadyExists);
    const { member } = await admin.updateMember({ member: { name: "accounts/roles/members/frank", role: Role.DEVELOPER }, updateMask: { paths: ["role"] } });
    expect(member?.role).toBe(Role.DEVELOPER);
    await expectCode(admin.updateMember({ member: { name: "accounts/roles/members/root", role: Role.USER }, updateMask: { paths: ["role"] } }), Code.FailedPrecondition, /last admin/);
    await expectCode(admin.removeMember({ name: "accounts/roles/members/root" }), Code.FailedPrecondition, /last admin/);
    await admin.removeMember({ name: "accounts/roles/members/frank" });
    await expectCode(admin.removeMember({ name: "accounts/roles/members/frank" }), Code.NotFound);
    // A member without a role claim gets the members-table role: dana is a developer.
    const dana = await as("roles", undefined, "dana");
    await dana.addMember({ parent: "accounts/roles", member: { userId: "gail", role: Role.USER } });
    await expectCode(dana.updateAccount({ account: { name: "accounts/roles", displayName: "x" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /caller is developer/);
  });

  it("pages members with page_size and an opaque page_token", async () => {
    const admin = await as("pages", "admin", "p0");
    await admin.createAccount({ account: {} });
    for (let i = 1; i <= 4; i++) await admin.addMember({ parent: "accounts/pages", member: { userId: `p${i}`, role: Role.USER } });
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const res = await admin.listMembers({ parent: "accounts/pages", pageSize: 2, pageToken });
      expect(res.members.length).toBeLessThanOrEqual(2);
      seen.push(...res.members.map((m) => m.userId));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken);
    expect(seen.sort()).toEqual(["p0", "p1", "p2", "p3", "p4"]);
    expect(pages).toBe(3);
    await expectCode(admin.listMembers({ parent: "accounts/pages", pageToken: "garbage" }), Code.InvalidArgument, /page_token/);
  });
});

describe("bad input gets INVALID_ARGUMENT naming the field, never INTERNAL", () => {
  it.each([
    ["CreateAccount without account", (c: Awaited<ReturnType<typeof as>>) => c.createAccount({}), /account/],
    ["CreateAccount bad email", (c: Awaited<ReturnType<typeof as>>) => c.createAccount({ account: { billingEmail: "not-an-email" } }), /billing_email/],
    ["CreateAccount long name", (c: Awaited<ReturnType<typeof as>>) => c.createAccount({ account: { displayName: "x".repeat(201) } }), /display_name/],
    ["GetAccount bad name", (c: Awaited<ReturnType<typeof as>>) => c.getAccount({ name: "projects/x" }), /name/],
    ["GetAccount empty name", (c: Awaited<ReturnType<typeof as>>) => c.getAccount({ name: "" }), /name/],
    ["UpdateAccount without mask", (c: Awaited<ReturnType<typeof as>>) => c.updateAccount({ account: { name: "accounts/bad" } }), /update_mask/],
    ["UpdateAccount unknown path", (c: Awaited<ReturnType<typeof as>>) => c.updateAccount({ account: { name: "accounts/bad" }, updateMask: { paths: ["plan_tier"] } }), /update_mask/],
    ["UpdateAccount without name", (c: Awaited<ReturnType<typeof as>>) => c.updateAccount({ account: { displayName: "x" }, updateMask: { paths: ["display_name"] } }), /account\.name/],
    ["ListMembers oversized page", (c: Awaited<ReturnType<typeof as>>) => c.listMembers({ parent: "accounts/bad", pageSize: 5000 }), /page_size/],
    ["ListMembers negative page", (c: Awaited<ReturnType<typeof as>>) => c.listMembers({ parent: "accounts/bad", pageSize: -1 }), /page_size/],
    ["ListMembers bad parent", (c: Awaited<ReturnType<typeof as>>) => c.listMembers({ parent: "accounts/" }), /parent/],
    ["AddMember no role", (c: Awaited<ReturnType<typeof as>>) => c.addMember({ parent: "accounts/bad", member: { userId: "x" } }), /role/],
    ["AddMember no user", (c: Awaited<ReturnType<typeof as>>) => c.addMember({ parent: "accounts/bad", member: { role: Role.USER } }), /user_id/],
    ["AddMember bad user id", (c: Awaited<ReturnType<typeof as>>) => c.addMember({ parent: "accounts/bad", member: { userId: "a b/c", role: Role.USER } }), /user_id/],
    ["AddMember undefined role", (c: Awaited<ReturnType<typeof as>>) => c.addMember({ parent: "accounts/bad", member: { userId: "x", role: 42 as Role } }), /role/],
    ["UpdateMember without mask", (c: Awaited<ReturnType<typeof as>>) => c.updateMember({ member: { name: "accounts/bad/members/x", role: Role.USER } }), /update_mask/],
    ["UpdateMember bad mask", (c: Awaited<ReturnType<typeof as>>) => c.updateMember({ member: { name: "accounts/bad/members/x", role: Role.USER }, updateMask: { paths: ["user_id"] } }), /update_mask/],
    ["UpdateMember no name", (c: Awaited<ReturnType<typeof as>>) => c.updateMember({ member: { role: Role.USER }, updateMask: { paths: ["role"] } }), /member\.name/],
    ["RemoveMember bad name", (c: Awaited<ReturnType<typeof as>>) => c.removeMember({ name: "accounts/bad/users/x" }), /name/],
  ])("%s", async (_label, call, field) => {
    const admin = await as("bad", "admin");
    const err = await expectCode(call(admin), Code.InvalidArgument);
    expect(err.rawMessage).toMatch(field);
    expect(err.rawMessage).not.toMatch(/at .*\.ts|Error:/);
  });
});
