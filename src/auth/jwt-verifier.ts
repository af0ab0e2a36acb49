/**
 * Verifies identity-provider JWTs against the provider's JWKS with `jose`:
 * the remote key set is cached and refetched on an unknown `kid` (with a
 * cool-down), algorithms are allowlisted (never `none`, never HMAC), `exp`
 * and `sub` are required, `iss`/`aud` checked, with a small clock tolerance.
 * Verified tokens are cached by hash until they expire (at most 5 minutes),
 * so the same token sent on every call costs a hash and a map lookup.
 */
import { createHash } from "node:crypto";
import { type JSONWebKeySet, type JWTPayload, createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from "jose";
import { AuthError } from "./auth-error.js";

export interface JwtVerifierOptions {
  /** The identity provider's JWKS URL (cached, refetched on an unknown kid). */
  jwksUrl?: string;
  /** A local key set instead (the built-in development issuer: no HTTP to ourselves). */
  jwks?: JSONWebKeySet;
  issuer?: string;
  audience?: string;
  algorithms: string[];
  clockToleranceSec?: number;
  projectClaim?: string;
  roleClaim?: string;
  /** Epoch milliseconds; injected so tests can move time. */
  now?: () => number;
  /** Refetch cool-down for unknown kids, ms. */
  cooldownMs?: number;
}

export interface VerifiedJwt {
  subject: string;
  projectId: string;
  role?: string;
  sessionId?: string;
  issuedAt?: number;
  /** Epoch seconds. */
  expiresAt: number;
  claims: JWTPayload;
}

export interface JwtVerifier {
  verify(token: string): Promise<VerifiedJwt>;
  clearCache(): void;
}

const CACHE_MAX = 10_000;
const CACHE_TTL_SEC = 300;
const ROLES = new Set(["admin", "developer", "user"]);

export function createJwtVerifier(opts: JwtVerifierOptions): JwtVerifier {
  const hmac = opts.algorithms.filter((a) => a.startsWith("HS") || a === "none");
  if (hmac.length) throw new Error(`JWT algorithms ${hmac.join(", ")} are not allowed (HMAC or none)`);
  const now = opts.now ?? Date.now;
  const tolerance = opts.clockToleranceSec ?? 30;
  const projectClaim = opts.projectClaim ?? "project_id";
  const roleClaim = opts.roleClaim ?? "role";
  if (!opts.jwksUrl && !opts.jwks) throw new Error("a JWKS URL or key set is required");
  const jwks = opts.jwks
    ? createLocalJWKSet(opts.jwks)
    : createRemoteJWKSet(new URL(opts.jwksUrl!), {
        cooldownDuration: opts.cooldownMs ?? 30_000,
        cacheMaxAge: 10 * 60_000,
        timeoutDuration: 5_000,
      });
  const cache = new Map<string, { jwt: VerifiedJwt; until: number }>();

  async function verifyUncached(token: string): Promise<VerifiedJwt> {
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new AuthError("TOKEN_MALFORMED", "token is malformed: not a JWT");
    }
    if (typeof header.alg !== "string" || !opts.algorithms.includes(header.alg)) {
      throw new AuthError("TOKEN_ALG_NOT_ALLOWED", `token algorithm ${String(header.alg)} is not allowed (accepted: ${opts.algorithms.join(", ")})`);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        algorithms: opts.algorithms,
        issuer: opts.issuer,
        audience: opts.audience,
        requiredClaims: ["exp", "sub"],
        clockTolerance: tolerance,
        currentDate: new Date(now()),
      }));
    } catch (err) {
      throw toAuthError(err, header.kid);
    }
    const project = payload[projectClaim] ?? payload.project;
    if (typeof project !== "string" || project === "") {
      throw new AuthError("TOKEN_CLAIM_MISSING", `token has no ${projectClaim} claim naming the project`);
    }
    const role = payload[roleClaim];
    const sid = payload.sid ?? payload.jti;
    return {
      subject: payload.sub!,
      projectId: project,
      role: typeof role === "string" && ROLES.has(role) ? role : undefined,
      sessionId: typeof sid === "string" ? sid : undefined,
      issuedAt: payload.iat,
      expiresAt: payload.exp!,
      claims: payload,
    };
  }

  return {
    async verify(token) {
      const key = createHash("sha256").update(token).digest("base64url");
      const nowSec = now() / 1000;
      const hit = cache.get(key);
      if (hit && nowSec < hit.until) {
        // The cache never outlives exp (+ tolerance), so a cached token cannot outlive its validity.
        return hit.jwt;
      }
      if (hit) cache.delete(key);
      const jwt = await verifyUncached(token);
      cache.set(key, { jwt, until: Math.min(jwt.expiresAt + tolerance, nowSec + CACHE_TTL_SEC) });
      if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
      return jwt;
    },
    clearCache: () => cache.clear(),
  };
}

/** jose's errors, as a reason and a message a client can act on. */
function toAuthError(err: unknown, kid: string | undefined): AuthError {
  if (err instanceof errors.JWTExpired) return new AuthError("TOKEN_EXPIRED", "token expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case "iss":
        return new AuthError("TOKEN_WRONG_ISSUER", "token issuer is not accepted");
      case "aud":
        return new AuthError("TOKEN_WRONG_AUDIENCE", "token audience is not accepted");
      case "nbf":
        return new AuthError("TOKEN_NOT_YET_VALID", "token is not yet valid (nbf is in the future)");
      case "iat":
        return new AuthError("TOKEN_NOT_YET_VALID", "token is not yet valid (issued in the future)");
      default:
        return new AuthError("TOKEN_CLAIM_MISSING", `token claim ${err.claim} is missing or invalid`);
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthError("TOKEN_BAD_SIGNATURE", "token signature is invalid");
  if (err instanceof errors.JOSEAlgNotAllowed) return new AuthError("TOKEN_ALG_NOT_ALLOWED", "token algorithm is not allowed");
  if (err instanceof errors.JWKSNoMatchingKey) {
    return new AuthError("TOKEN_UNKNOWN_KID", `token signing key ${kid ? `kid=${kid.slice(0, 64)} ` : ""}is unknown to the identity provider's JWKS`);
  }
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) {
    return new AuthError("JWKS_UNAVAILABLE", "the identity provider's keys could not be fetched; try again");
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return new AuthError("TOKEN_MALFORMED", "token is malformed");
  }
  if (err instanceof TypeError || (err instanceof Error && /fetch|ECONNREFUSED/i.test(err.message))) {
    return new AuthError("JWKS_UNAVAILABLE", "the identity provider's keys could not be fetched; try again");
  }
  return new AuthError("TOKEN_MALFORMED", "token could not be verified");
}
