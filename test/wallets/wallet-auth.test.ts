/**
 * Wallet tokens against a real server: binding by signed challenge, tokens
 * from real Ethereum and Solana key pairs accepted or refused with a precise
 * UNAUTHENTICATED, the api/admin scopes, model allowlists, and budgets per
 * session and per account over rounds and windows, exact under concurrency.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { LimitExceededSchema, LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { expectCode } from "../support/expect-error.js";
import { bearer, type TestServer, startTestServer } from "../support/test-server.js";
import { type TestWallet, ethWallet, solanaWallet, tamper, walletToken } from "../support/wallets.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } })));
const clock = new ManualClock(Date.now());
let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({}, { clock, plans });
});
afterAll(async () => {
  await ts?.close();
});

const nowS = () => Math.floor(clock.now() / 1000);
const m = (projectId: string, name: string) => `models/${projectId}/${name}`;

/** An account with two models (m1: 1,000 micro-USD per 500 input tokens; m2), credits, and a developer. */
async function setup(projectId: string, credits = 1_000_000_000) {
  const admin = await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` });
  await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
  const models = createClient(ModelService, ts.grpc(admin));
  for (const id of ["m1", "m2"]) {
    await models.createModel({ modelId: `${projectId}/${id}`, model: { displayName: id, inputPriceMicrosPerMillion: 2_000_000n, outputPriceMicrosPerMillion: 4_000_000n, visibility: ModelVisibility.PRIVATE } });
  }
  await ts.app.database.transaction((tx) => ledger.book(tx, { projectId, kind: "grant", amountMicros: credits, idempotencyKey: `grant-${projectId}` }, clock.now()));
  const dev = await ts.token({ projectId, role: "developer", subject: `${projectId}-dev` });
  return { admin, dev };
}

/** Binds a wallet to the project as the token's user, through the wire. */
async function bind(token: string, projectId: string, wallet: TestWallet) {
  const accounts = createClient(AccountService, ts.grpc(token));
  const { challenge } = await accounts.createWalletChallenge({ parent: `accounts/${projectId}`, accountId: wallet.accountId });
  const { binding } = await accounts.bindWallet({ parent: `accounts/${projectId}`, accountId: wallet.accountId, nonce: challenge!.nonce, signature: wallet.signMessage(challenge!.message) });
  return binding!;
}

const usageAs = (token: string) => createClient(UsageService, createGrpcTransport({ baseUrl: ts.url, interceptors: bearer(token) }));
const record = (token: string, projectId: string, requestId: string, model = "m1") =>
  usageAs(token).recordUsage({ parent: `accounts/${projectId}`, requestId, usage: { case: "modelUsage", value: { model: m(projectId, model), inputTokens: 500n } } });

function reasonOf(err: unknown) {
  return ConnectError.from(err).findDetails(LimitExceededSchema)[0]?.reason;
}

describe("binding a wallet", () => {
  it("binds Ethereum (SIWE message) and Solana wallets, lists and removes them", async () => {
    const { dev } = await setup("bindok");
    const eth = ethWallet(137);
    const sol = solanaWallet();
    const accounts = createClient(AccountService, ts.grpc(dev));
    const { challenge } = await accounts.createWalletChallenge({ parent: "accounts/bindok", accountId: eth.accountId });
    expect(challenge!.message).toContain("wants you to sign in with your Ethereum account:");
    expect(challenge!.message).toContain(eth.accountId.split(":")[2]);
    expect(challenge!.message).toContain(`Nonce: ${challenge!.nonce}`);
    expect(challenge!.message).toContain("Chain ID: 137");
    const b1 = await bind(dev, "bindok", eth);
    expect(b1).toMatchObject({ accountId: eth.accountId.toLowerCase(), chainId: "eip155:137", userId: "bindok-dev" });
    clock.advance(1); // oldest first: the second binding is later
    const b2 = await bind(dev, "bindok", sol);
    expect(b2.accountId).toBe(sol.accountId);
    const { bindings } = await accounts.listWalletBindings({ parent: "accounts/bindok" });
    expect(bindings.map((b) => b.name)).toEqual([b1.name, b2.name]);

    const token = walletToken(sol, { iat: nowS(), scope: "api" });
    await record(token, "bindok", "before-unbind");
    await accounts.deleteWalletBinding({ name: b2.name });
    await expectCode(record(token, "bindok", "after-unbind"), Code.Unauthenticated, /is not bound to an account/);
    await expectCode(accounts.deleteWalletBinding({ name: b2.name }), Code.NotFound);
  });

  it("a nonce is single-use and expires; another nonce's or another wallet's signature fails", async () => {
    const { dev } = await setup("nonce");
    const w = ethWallet();
    const other = ethWallet();
    const accounts = createClient(AccountService, ts.grpc(dev));
    const parent = "accounts/nonce";
    const { challenge: c1 } = await accounts.createWalletChallenge({ parent, accountId: w.accountId });
    const { challenge: c2 } = await accounts.createWalletChallenge({ parent, accountId: w.accountId });
    // A signature over the other nonce's message.
    await expectCode(accounts.bindWallet({ parent, accountId: w.accountId, nonce: c1!.nonce, signature: w.signMessage(c2!.message) }), Code.Unauthenticated, /not this wallet's over the challenge message/);
    // Another wallet signing this wallet's challenge.
    await expectCode(accounts.bindWallet({ parent, accountId: w.accountId, nonce: c1!.nonce, signature: other.signMessage(c1!.message) }), Code.Unauthenticated, /not this wallet's/);
    // The nonce presented for another wallet than it was issued for.
    await expectCode(accounts.bindWallet({ parent, accountId: other.accountId, nonce: c1!.nonce, signature: other.signMessage(c1!.message) }), Code.FailedPrecondition, /unknown nonce/);
    await expectCode(accounts.bindWallet({ parent, accountId: w.accountId, nonce: "made-up", signature: w.signMessage(c1!.message) }), Code.FailedPrecondition, /unknown nonce/);
    // Failed attempts did not spend it: the right signature binds, once.
    await accounts.bindWallet({ parent, accountId: w.accountId, nonce: c1!.nonce, signature: w.signMessage(c1!.message) });
    await expectCode(accounts.bindWallet({ parent, accountId: w.accountId, nonce: c1!.nonce, signature: w.signMessage(c1!.message) }), Code.FailedPrecondition, /already used/);
    // Expiry: five minutes.
    const { challenge: c3 } = await accounts.createWalletChallenge({ parent, accountId: other.accountId });
    clock.advance(5 * 60_000 + 1);
    await expectCode(accounts.bindWallet({ parent, accountId: other.accountId, nonce: c3!.nonce, signature: other.signMessage(c3!.message) }), Code.FailedPrecondition, /expired/);
    // Binding the same wallet twice.
    const { challenge: c4 } = await accounts.createWalletChallenge({ parent, accountId: w.accountId });
    await expectCode(accounts.bindWallet({ parent, accountId: w.accountId, nonce: c4!.nonce, signature: w.signMessage(c4!.message) }), Code.AlreadyExists);
    // Malformed input.
    await expectCode(accounts.createWalletChallenge({ parent, accountId: "eip155:1:0x12" }), Code.InvalidArgument, /account_id/);
    await expectCode(accounts.bindWallet({ parent, accountId: w.accountId, nonce: c4!.nonce, signature: "0x1234" }), Code.InvalidArgument, /65-byte/);
  });

  it("another project's binding is not found, and API keys cannot bind", async () => {
    const { dev } = await setup("iso-a");
    const { dev: devB } = await setup("iso-b");
    const b = await bind(dev, "iso-a", solanaWallet());
    await expectCode(createClient(AccountService, ts.grpc(devB)).deleteWalletBinding({ name: b.name }), Code.NotFound);
  });
});

describe("wallet tokens on the wire", () => {
  it.each([
    ["eip155", () => ethWallet()],
    ["solana", () => solanaWallet()],
  ])("%s: valid tokens work; every bad one is UNAUTHENTICATED with a precise message", async (ns, make) => {
    const projectId = `wire-${ns}`;
    const { dev } = await setup(projectId);
    const wallet = make();
    await bind(dev, projectId, wallet);
    await record(walletToken(wallet, { iat: nowS(), scope: "api" }), projectId, "ok-api");
    const admin = walletToken(wallet, { iat: nowS(), exp: nowS() + 600, scope: "admin" });
    const { account } = await createClient(AccountService, ts.grpc(admin)).getAccount({ name: `accounts/${projectId}` });
    expect(account?.projectId).toBe(projectId);

    const cases: Array<[string, string, RegExp]> = [
      ["wrong signer", walletToken(wallet, { iat: nowS(), scope: "api" }, { signer: make() }), ns === "eip155" ? /recovers to another address than its iss/ : /not the issuer's Ed25519 signature/],
      ["tampered", tamper(walletToken(wallet, { iat: nowS(), scope: "api", budget: 1 }), (c) => delete c.budget), /signature/],
      ["expired", walletToken(wallet, { iat: nowS() - 7200, exp: nowS() - 3600, scope: "admin" }), /^wallet token expired$/],
      ["admin without exp", walletToken(wallet, { iat: nowS(), scope: "admin" }), /admin scope need an exp claim/],
      ["unbound", walletToken(make(), { iat: nowS(), scope: "api" }), /is not bound to an account/],
    ];
    for (const [what, token, message] of cases) {
      const err = await expectCode(record(token, projectId, `bad-${what}`), Code.Unauthenticated, message);
      expect(err.rawMessage, what).not.toContain(token.slice(-20));
    }
  });

  it("api scope reaches metered methods only; admin scope manages the account but never above the binder's role", async () => {
    const { admin: adminJwt, dev } = await setup("scopes");
    const w = ethWallet();
    await bind(dev, "scopes", w);
    const api = walletToken(w, { iat: nowS(), scope: "api" });
    await expectCode(createClient(AccountService, ts.grpc(api)).getAccount({ name: "accounts/scopes" }), Code.PermissionDenied, /api scope call metered methods only/);
    const adminToken = walletToken(w, { iat: nowS(), exp: nowS() + 600, scope: "admin" });
    const accounts = createClient(AccountService, ts.grpc(adminToken));
    await accounts.listMembers({ parent: "accounts/scopes" });
    // Bound by a developer: admin-only methods stay closed.
    await expectCode(accounts.updateAccount({ account: { name: "accounts/scopes", displayName: "x" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /needs role admin/);
    // A wallet bound by an admin may.
    const w2 = solanaWallet();
    await bind(adminJwt, "scopes", w2);
    const a2 = walletToken(w2, { iat: nowS(), exp: nowS() + 600, scope: "admin" });
    await createClient(AccountService, ts.grpc(a2)).updateAccount({ account: { name: "accounts/scopes", displayName: "by wallet" }, updateMask: { paths: ["display_name"] } });
  });

  it("admin scope is never global: a wallet bound in the platform project cannot grant credits elsewhere or publish platform models", async () => {
    await setup("tenant");
    const platformAdmin = await ts.token({ projectId: "platform", role: "admin", subject: "platform-admin" });
    await createClient(AccountService, ts.grpc(platformAdmin)).createAccount({ account: {} });
    const w = ethWallet();
    await bind(platformAdmin, "platform", w);
    const token = walletToken(w, { iat: nowS(), exp: nowS() + 600, scope: "admin" });
    const grant = { parent: "accounts/tenant", amountMicros: 1_000n, reason: "test", requestId: "g1" };
    // The person can; the wallet acting for them cannot.
    await createClient(BillingService, ts.grpc(platformAdmin)).addCredits(grant);
    await expectCode(createClient(BillingService, ts.grpc(token)).addCredits({ ...grant, requestId: "g2" }), Code.NotFound);
    const model = { modelId: "platform/wm", model: { displayName: "wm", inputPriceMicrosPerMillion: 1n, outputPriceMicrosPerMillion: 1n } };
    await expectCode(createClient(ModelService, ts.grpc(token)).createModel(model), Code.PermissionDenied, /never act platform-wide/);
    await createClient(ModelService, ts.grpc(platformAdmin)).createModel(model);
    await expectCode(
      createClient(ModelService, ts.grpc(token)).updateModel({ model: { name: "models/platform/wm", displayName: "changed" }, updateMask: { paths: ["display_name"] } }),
      Code.PermissionDenied,
      /never act platform-wide/,
    );
  });

  it("the models claim restricts which models are metered", async () => {
    const { dev } = await setup("models");
    const w = solanaWallet();
    await bind(dev, "models", w);
    const token = walletToken(w, { iat: nowS(), scope: "api", models: ["models/m1"] });
    await record(token, "models", "m1-ok");
    await expectCode(record(token, "models", "m2-no", "m2"), Code.PermissionDenied, /this wallet token may not use models\/models\/m2/);
    await expectCode(
      usageAs(token).authorizeUsage({ parent: "accounts/models", requestId: "hold-m2", estimate: { case: "modelUsage", value: { model: m("models", "m2"), inputTokens: 1n } } }),
      Code.PermissionDenied,
    );
  });
});

describe("wallet budgets", () => {
  it("per session over rounds: exactly `count` calls, then payment required (FAILED_PRECONDITION) with the spend-cap reason", async () => {
    const { dev } = await setup("rounds");
    const w = ethWallet();
    await bind(dev, "rounds", w);
    const token = walletToken(w, { iat: nowS(), scope: "api", budget: 1_000_000, budget_range: { type: "rounds", count: 3 } });
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => record(token, "rounds", `r${i}`)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
    for (const r of results.filter((r): r is PromiseRejectedResult => r.status === "rejected")) {
      expect(ConnectError.from(r.reason).code).toBe(Code.FailedPrecondition);
      expect(reasonOf(r.reason)).toBe(LimitReason.SPEND_CAP);
      expect(ConnectError.from(r.reason).rawMessage).toMatch(/covers 3 rounds/);
    }
    // Another session (another sid) has its own budget.
    await record(walletToken(w, { iat: nowS(), scope: "api", sid: "second", budget: 1_000_000, budget_range: { type: "rounds", count: 3 } }), "rounds", "other-session");
  });

  it("a re-encoded (malleated, s -> n - s) Ethereum signature does not open a fresh session budget", async () => {
    const { dev } = await setup("malleate");
    const w = ethWallet();
    await bind(dev, "malleate", w);
    const token = walletToken(w, { iat: nowS(), scope: "api", budget: 1_000_000, budget_range: { type: "rounds", count: 1 } });
    await record(token, "malleate", "once");
    const [h, p, sig] = token.split(".");
    const bytes = Buffer.from(sig, "base64url");
    const n = secp256k1.Point.CURVE().n;
    const s = BigInt(`0x${bytes.subarray(32, 64).toString("hex")}`);
    const flipped = Buffer.concat([bytes.subarray(0, 32), Buffer.from((n - s).toString(16).padStart(64, "0"), "hex"), Buffer.from([bytes[64] === 27 ? 28 : 27])]);
    const malleated = `${h}.${p}.${flipped.toString("base64url")}`;
    expect(malleated).not.toBe(token);
    const err = await expectCode(record(malleated, "malleate", "twice"), Code.FailedPrecondition, /covers 1 rounds/);
    expect(reasonOf(err)).toBe(LimitReason.SPEND_CAP);
  });

  it("per session, exact under 40 concurrent calls: 10 of 1,000 micro-USD fit a 10,000 budget; credits and ledger agree", async () => {
    const { dev } = await setup("exact", 1_000_000);
    const w = solanaWallet();
    await bind(dev, "exact", w);
    const token = walletToken(w, { iat: nowS(), scope: "api", sid: "run-1", budget: 10_000 });
    const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => record(token, "exact", `c${i}`)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(10);
    for (const r of results.filter((r): r is PromiseRejectedResult => r.status === "rejected")) expect(reasonOf(r.reason)).toBe(LimitReason.SPEND_CAP);
    expect(await ts.app.accounts.creditBalance("exact")).toBe(1_000_000 - 10_000);
    expect(await ledger.ledgerSum(ts.app.database.db, "exact")).toBe(1_000_000 - 10_000);
    // A second token of the same session shares the budget.
    await expectCode(record(walletToken(w, { iat: nowS(), scope: "api", sid: "run-1", budget: 10_000 }), "exact", "same-session"), Code.FailedPrecondition, /10000 of 10000 micro-USD spent/);
  });

  it("over a duration: a budget per window that renews when the window ends", async () => {
    const { dev } = await setup("window");
    const w = ethWallet();
    await bind(dev, "window", w);
    const token = walletToken(w, { iat: nowS(), scope: "api", budget: 2_000, budget_range: { type: "duration", seconds: 60 } });
    await record(token, "window", "w1");
    await record(token, "window", "w2");
    await expectCode(record(token, "window", "w3"), Code.FailedPrecondition, /in this 60-second window/);
    clock.advance(60_000);
    await record(token, "window", "w4");
    await record(token, "window", "w5");
    await expectCode(record(token, "window", "w6"), Code.FailedPrecondition);
  });

  it("per account: every session of the wallet shares it, exactly, under concurrency", async () => {
    const { dev } = await setup("acct");
    const w = solanaWallet();
    await bind(dev, "acct", w);
    const claims = { scope: "api", budget: 7_000, budget_scope: "account" };
    const tokens = Array.from({ length: 4 }, (_, i) => walletToken(w, { iat: nowS(), sid: `s${i}`, ...claims }));
    const results = await Promise.allSettled(Array.from({ length: 24 }, (_, i) => record(tokens[i % 4], "acct", `a${i}`)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(7);
  });

  it("goes through the hold path: a hold reserves budget, a release gives it back, settlement charges the actual cost", async () => {
    const { dev } = await setup("holdb");
    const w = ethWallet();
    await bind(dev, "holdb", w);
    const token = walletToken(w, { iat: nowS(), scope: "api", sid: "h", budget: 5_000 });
    const usage = usageAs(token);
    const hold = (id: string, micros: bigint) => usage.authorizeUsage({ parent: "accounts/holdb", requestId: id, estimate: { case: "estimatedCostMicros", value: micros } });
    const h1 = await hold("h1", 4_000n);
    await expectCode(hold("h2", 2_000n), Code.FailedPrecondition, /4000 of 5000 micro-USD spent/);
    await usage.releaseAuthorization({ name: h1.authorization!.name });
    const h3 = await hold("h3", 4_000n);
    // Settling at the actual 1,000 returns 3,000 to the budget.
    await usage.recordUsage({ parent: "accounts/holdb", requestId: "settle", authorization: h3.authorization!.name, usage: { case: "modelUsage", value: { model: m("holdb", "m1"), inputTokens: 500n } } });
    await hold("h4", 4_000n);
    await expectCode(hold("h5", 1n), Code.FailedPrecondition);
  });

  it("CheckEligibility reports an exhausted budget without spending", async () => {
    const { dev } = await setup("elig");
    const w = solanaWallet();
    await bind(dev, "elig", w);
    const token = walletToken(w, { iat: nowS(), scope: "api", budget: 1_000 });
    const usage = usageAs(token);
    const check = () => usage.checkEligibility({ parent: "accounts/elig", check: { case: "modelUsage", value: { model: m("elig", "m1"), inputTokens: 500n } } });
    expect((await check()).eligible).toBe(true);
    await record(token, "elig", "e1");
    const after = await check();
    expect(after.eligible).toBe(false);
    expect(after.reason).toBe(LimitReason.SPEND_CAP);
  });
});
