/**
 * Wallet-signed capability tokens: compact JWS (`header.payload.signature`,
 * base64url) signed by the wallet itself. Solana wallets sign the ASCII
 * signing input with Ed25519 (`alg: EdDSA`); Ethereum wallets sign it with
 * `personal_sign` (`alg: EIP191`, 65-byte r‖s‖v), so any browser wallet can
 * make one. The claims carry the token's own limits; see docs/wallet-tokens.md.
 */
import { createHash } from "node:crypto";
import { AuthError } from "../auth/auth-error.js";
import { CaipError, type WalletAccount, parseAccountId } from "./caip.js";
import { recoverEthSigner, verifyEd25519 } from "./signatures.js";

export type WalletScope = "admin" | "api";
export type BudgetRange = { type: "rounds"; count: number } | { type: "duration"; seconds: number };

export interface WalletBudgetClaim {
  limitMicros: number;
  scope: "session" | "account";
  range?: BudgetRange;
}

/** A verified wallet token. */
export interface WalletToken {
  account: WalletAccount;
  scope: WalletScope;
  /** Epoch seconds. */
  issuedAt: number;
  /** Epoch seconds; undefined for api tokens without exp. */
  expiresAt?: number;
  /** Model name patterns the token may meter; empty means any. */
  models: string[];
  budget?: WalletBudgetClaim;
  /** `sid`, else `jti`, else the signed content: tokens sharing it share a session. */
  sessionKey: string;
}

export const WALLET_ALGS = { eip155: "EIP191", solana: "EdDSA" } as const;
const MAX_TOKEN_BYTES = 8192;
const CLOCK_SKEW_S = 60;

const decoder = new TextDecoder("utf-8", { fatal: true });

function b64urlJson(part: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(Buffer.from(part, "base64url")));
  } catch {
    throw new AuthError("TOKEN_MALFORMED", `wallet token ${what} is not base64url JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new AuthError("TOKEN_MALFORMED", `wallet token ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** The unverified payload's issuer, to tell wallet tokens from identity-provider JWTs. */
export function walletIssuerOf(token: string): string | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || token.length > MAX_TOKEN_BYTES) return undefined;
  try {
    const iss = (JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as { iss?: unknown }).iss;
    return typeof iss === "string" && (iss.startsWith("eip155:") || iss.startsWith("solana:")) ? iss : undefined;
  } catch {
    return undefined;
  }
}

const invalid = (message: string) => new AuthError("TOKEN_CLAIM_INVALID", message);

function nonNegativeInt(v: unknown, name: string): number {
  const n = typeof v === "string" && /^[0-9]{1,16}$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw invalid(`wallet token ${name} must be a non-negative integer`);
  return n;
}

function positiveInt(v: unknown, name: string): number {
  const n = nonNegativeInt(v, name);
  if (n === 0) throw invalid(`wallet token ${name} must be at least 1`);
  return n;
}

/**
 * Verifies signature and claims; `nowMs` is the server clock. Throws AuthError
 * naming exactly what is wrong (the token itself never appears in messages).
 */
export function verifyWalletToken(token: string, nowMs: number): WalletToken {
  if (token.length > MAX_TOKEN_BYTES) throw new AuthError("TOKEN_MALFORMED", `wallet token is longer than ${MAX_TOKEN_BYTES} bytes`);
  const parts = token.split(".");
  if (parts.length !== 3) throw new AuthError("TOKEN_MALFORMED", "wallet token must be header.payload.signature");
  const header = b64urlJson(parts[0], "header");
  const claims = b64urlJson(parts[1], "payload");

  if (typeof claims.iss !== "string") throw new AuthError("TOKEN_CLAIM_MISSING", "wallet token iss claim must be a CAIP-10 account id");
  let account: WalletAccount;
  try {
    account = parseAccountId(claims.iss);
  } catch (err) {
    throw invalid(`wallet token iss: ${err instanceof CaipError ? err.message : "not a CAIP-10 account id"}`);
  }
  if (claims.chain !== account.chainId) throw invalid(`wallet token chain claim must be ${account.chainId}, the chain of its iss`);
  const alg = WALLET_ALGS[account.namespace];
  if (header.alg !== alg) throw new AuthError("TOKEN_ALG_NOT_ALLOWED", `${account.namespace} wallet tokens are signed with alg ${alg}`);

  // Signature before the remaining claims: unsigned claims earn no detailed messages.
  const signingInput = new TextEncoder().encode(`${parts[0]}.${parts[1]}`);
  const signature = Buffer.from(parts[2], "base64url");
  if (account.namespace === "solana") {
    if (!verifyEd25519(signingInput, signature, account.publicKey)) throw new AuthError("TOKEN_BAD_SIGNATURE", "wallet token signature is not the issuer's Ed25519 signature over these claims (another signer, or altered claims)");
  } else {
    const signer = recoverEthSigner(signingInput, signature);
    if (signer === undefined) throw new AuthError("TOKEN_BAD_SIGNATURE", "wallet token signature is not a 65-byte secp256k1 signature");
    if (signer !== account.address) throw new AuthError("TOKEN_BAD_SIGNATURE", "wallet token signature recovers to another address than its iss (another signer, or altered claims)");
  }

  const nowS = Math.floor(nowMs / 1000);
  if (claims.iat === undefined) throw new AuthError("TOKEN_CLAIM_MISSING", "wallet token needs an iat claim");
  const issuedAt = nonNegativeInt(claims.iat, "iat");
  if (issuedAt > nowS + CLOCK_SKEW_S) throw new AuthError("TOKEN_NOT_YET_VALID", "wallet token iat is in the future");
  if (claims.nbf !== undefined && nonNegativeInt(claims.nbf, "nbf") > nowS + CLOCK_SKEW_S) throw new AuthError("TOKEN_NOT_YET_VALID", "wallet token is not valid yet (nbf)");
  const expiresAt = claims.exp === undefined ? undefined : nonNegativeInt(claims.exp, "exp");
  if (expiresAt !== undefined && expiresAt <= nowS - CLOCK_SKEW_S) throw new AuthError("TOKEN_EXPIRED", "wallet token expired");
  if (expiresAt !== undefined && expiresAt <= issuedAt) throw invalid("wallet token exp must be after iat");

  const scope = claims.scope;
  if (scope !== "admin" && scope !== "api") throw invalid('wallet token scope must be "admin" or "api"');
  if (scope === "admin" && expiresAt === undefined) throw new AuthError("TOKEN_CLAIM_MISSING", "wallet tokens with admin scope need an exp claim");

  let models: string[] = [];
  if (claims.models !== undefined) {
    if (!Array.isArray(claims.models) || claims.models.length > 100 || !claims.models.every((m) => typeof m === "string" && m !== "" && m.length <= 200)) {
      throw invalid("wallet token models must be an array of up to 100 non-empty model name patterns");
    }
    models = claims.models as string[];
  }

  let budget: WalletBudgetClaim | undefined;
  if (claims.budget !== undefined) {
    const budgetScope = claims.budget_scope ?? "session";
    if (budgetScope !== "session" && budgetScope !== "account") throw invalid('wallet token budget_scope must be "session" or "account"');
    budget = { limitMicros: nonNegativeInt(claims.budget, "budget"), scope: budgetScope };
    const range = claims.budget_range as { type?: unknown; count?: unknown; seconds?: unknown } | undefined;
    if (range !== undefined) {
      if (typeof range !== "object" || range === null) throw invalid("wallet token budget_range must be an object");
      if (range.type === "rounds") budget.range = { type: "rounds", count: positiveInt(range.count, "budget_range.count") };
      else if (range.type === "duration") budget.range = { type: "duration", seconds: positiveInt(range.seconds, "budget_range.seconds") };
      else throw invalid('wallet token budget_range.type must be "rounds" or "duration"');
    }
  } else if (claims.budget_scope !== undefined || claims.budget_range !== undefined) {
    throw invalid("wallet token budget_scope and budget_range need a budget claim");
  }

  const sid = claims.sid ?? claims.jti;
  if (sid !== undefined && (typeof sid !== "string" || sid === "" || sid.length > 128)) throw invalid("wallet token sid and jti must be strings of 1 to 128 characters");
  // Without sid/jti the session is the signed content, never the signature: an ECDSA signature can be
  // re-encoded (s -> n - s) into another valid one, which must not open a fresh session and budget.
  const sessionKey = typeof sid === "string" ? `sid:${sid}` : `signed:${createHash("sha256").update(`${parts[0]}.${parts[1]}`).digest("base64url")}`;

  return { account, scope, issuedAt, expiresAt, models, budget, sessionKey };
}
