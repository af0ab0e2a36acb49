/** Wallet-token verification on its own: real key pairs, every refusal named. */
import { describe, expect, it } from "vitest";
import { AuthError } from "../../src/auth/auth-error.js";
import { parseAccountId } from "../../src/wallets/caip.js";
import { verifyWalletToken, walletIssuerOf } from "../../src/wallets/wallet-token.js";
import { ethWallet, solanaWallet, tamper, walletToken } from "../support/wallets.js";

const NOW = Date.UTC(2026, 10, 25, 12);
const iat = NOW / 1000 - 10;

function refusal(token: string, now = NOW): AuthError {
  try {
    verifyWalletToken(token, now);
  } catch (err) {
    if (err instanceof AuthError) return err;
    throw err;
  }
  throw new Error("the token was accepted");
}

describe.each([
  ["eip155", ethWallet],
  ["solana", () => solanaWallet()],
] as const)("%s tokens", (_, make) => {
  const wallet = make();
  const other = make();

  it("a valid token verifies with its claims", () => {
    const t = verifyWalletToken(walletToken(wallet, { iat, exp: iat + 600, scope: "admin", models: ["acme/*"], budget: "5000", budget_scope: "account", budget_range: { type: "rounds", count: 3 }, sid: "s1" }), NOW);
    expect(t.account.accountId).toBe(parseAccountId(wallet.accountId).accountId);
    expect(t).toMatchObject({ scope: "admin", issuedAt: iat, expiresAt: iat + 600, models: ["acme/*"], sessionKey: "sid:s1" });
    expect(t.budget).toEqual({ limitMicros: 5000, scope: "account", range: { type: "rounds", count: 3 } });
  });

  it("api tokens may omit exp; each token without sid/jti is its own session", () => {
    const a = verifyWalletToken(walletToken(wallet, { iat, scope: "api" }), NOW);
    const b = verifyWalletToken(walletToken(wallet, { iat: iat + 1, scope: "api" }), NOW);
    expect(a.expiresAt).toBeUndefined();
    expect(a.sessionKey).not.toBe(b.sessionKey);
  });

  it("refuses a token signed by another key", () => {
    const e = refusal(walletToken(wallet, { iat, scope: "api" }, { signer: other }));
    expect(e.reason).toBe("TOKEN_BAD_SIGNATURE");
    expect(e.message).toMatch(wallet.namespace === "eip155" ? /recovers to another address than its iss/ : /not the issuer's Ed25519 signature/);
  });

  it("refuses tampered claims", () => {
    const token = walletToken(wallet, { iat, scope: "api", budget: 100 });
    expect(refusal(tamper(token, (c) => (c.budget = 100_000_000))).reason).toBe("TOKEN_BAD_SIGNATURE");
    expect(refusal(tamper(token, (c) => (c.scope = "admin"))).reason).toBe("TOKEN_BAD_SIGNATURE");
  });

  it("refuses an expired token, admin scope without exp, and a future iat", () => {
    expect(refusal(walletToken(wallet, { iat: iat - 3600, exp: iat - 600, scope: "admin" }))).toMatchObject({ reason: "TOKEN_EXPIRED", message: "wallet token expired" });
    expect(refusal(walletToken(wallet, { iat, scope: "admin" }))).toMatchObject({ reason: "TOKEN_CLAIM_MISSING", message: "wallet tokens with admin scope need an exp claim" });
    expect(refusal(walletToken(wallet, { iat: iat + 3600, scope: "api" })).reason).toBe("TOKEN_NOT_YET_VALID");
    expect(refusal(walletToken(wallet, { scope: "api" }))).toMatchObject({ reason: "TOKEN_CLAIM_MISSING", message: "wallet token needs an iat claim" });
  });

  it("refuses a chain claim that is not the iss chain, the other family's alg, and bad claims", () => {
    expect(refusal(walletToken(wallet, { iat, scope: "api", chain: "eip155:5" })).message).toMatch(/chain claim must be/);
    expect(refusal(walletToken(wallet, { iat, scope: "api" }, { header: { alg: "HS256" } })).reason).toBe("TOKEN_ALG_NOT_ALLOWED");
    expect(refusal(walletToken(wallet, { iat, scope: "root" })).message).toBe('wallet token scope must be "admin" or "api"');
    expect(refusal(walletToken(wallet, { iat, scope: "api", budget: -1 })).message).toBe("wallet token budget must be a non-negative integer");
    expect(refusal(walletToken(wallet, { iat, scope: "api", budget: 1.5 })).message).toBe("wallet token budget must be a non-negative integer");
    expect(refusal(walletToken(wallet, { iat, scope: "api", budget: 5, budget_range: { type: "weeks" } })).message).toMatch(/budget_range.type/);
    expect(refusal(walletToken(wallet, { iat, scope: "api", budget_scope: "session" })).message).toMatch(/need a budget claim/);
    expect(refusal(walletToken(wallet, { iat, scope: "api", models: "acme/m1" })).message).toMatch(/models must be an array/);
  });
});

describe("telling wallet tokens apart", () => {
  it("reads iss without verifying, only for CAIP-10 issuers", () => {
    const w = ethWallet();
    expect(walletIssuerOf(walletToken(w, { iat, scope: "api" }))).toBe(w.accountId);
    expect(walletIssuerOf("a.b.c")).toBeUndefined();
    expect(walletIssuerOf(`${Buffer.from("{}").toString("base64url")}.${Buffer.from(JSON.stringify({ iss: "https://idp" })).toString("base64url")}.x`)).toBeUndefined();
  });

  it("refuses malformed account ids with a reason", () => {
    expect(() => parseAccountId("eip155:1:0x1234")).toThrow(/eip155:<decimal chain id>/);
    expect(() => parseAccountId("eip155:1:0xAbCdEf0000000000000000000000000000000000")).toThrow(/EIP-55 checksum/);
    expect(() => parseAccountId("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:abc")).toThrow(/solana account id/);
    expect(() => parseAccountId("cosmos:hub:addr")).toThrow(/eip155 or solana namespace/);
    expect(parseAccountId("eip155:1:0xAB5801A7D398351B8BE11C439E05C5B3259AEC9B").accountId).toBe("eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b");
  });
});
