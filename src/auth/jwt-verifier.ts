/**
 * Verifies identity-provider JWTs against the provider's JWKS with `jose`:
 * the remote key set is cached and refetched on an unknown `kid` (with a
 * cool-down), algorithms are allowlisted (never `none`, never HMAC), `exp`
 * and `sub` are required, `iss`/`aud` checked, with a small clock tolerance.
 * Verified tokens are cached by hash until they expire (at most 5 minutes),
 * so the same token sent on every call costs a hash and a map lookup.
 */
import { createHash } from "node:crypto";
import {
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
} from "jose";
import { AuthError } from "./auth-error.js";

/** Options of {@link createJwtVerifier}. */
export interface JwtVerifierOptions {
  /** The identity provider's JWKS URL (cached, refetched on an unknown kid). */
  jwksUrl?: string;
  /** A local key set instead (the built-in development issuer: no HTTP to ourselves). */
  jwks?: JSONWebKeySet;
  /** The accepted `iss`; unchecked when unset (development only: config requires it in production). */
  issuer?: string;
  /** The accepted `aud`; unchecked when unset. */
  audience?: string;
  /** Asymmetric JWS algorithms accepted, e.g. ["RS256", "ES256", "EdDSA"]. HMAC and none throw. */
  algorithms: string[];
  /** Seconds of clock skew allowed on exp and nbf; default 30. */
  clockToleranceSec?: number;
  /** The claim naming the project; default "project_id", with "project" accepted as a fallback. */
  projectClaim?: string;
  /** The claim naming the role; default "role". Unknown values are ignored. */
  roleClaim?: string;
  /** exp is always required; the option only documents that it cannot be turned off. */
  requireExp?: true;
  /** Epoch milliseconds; injected so tests can move time. */
  now?: () => number;
  /** After a successful JWKS fetch, how long an unknown kid waits before it may refetch; default 30 s. */
  cooldownMs?: number;
  /** JWKS HTTP timeout; default 5 s. */
  timeoutMs?: number;
  /** How long a fetched JWKS is used before it is fetched again; default 10 min. */
  cacheMaxAgeMs?: number;
  /** Verified tokens kept (least recently used evicted first); default 10,000. */
  cacheMaxEntries?: number;
}

/** The identity a verified JWT carries. */
export interface VerifiedJwt {
  subject: string;
  projectId: string;
  /** The role claim when it names a Formstate role; otherwise undefined (the members table decides). */
  role?: "admin" | "developer" | "user";
  /** `sid`, else `jti`. */
  sessionId?: string;
  /** Epoch seconds. */
  issuedAt?: number;
  /** Epoch seconds. */
  expiresAt: number;
  claims: JWTPayload;
}

/** Cache counters, for metrics and tests. */
export interface JwtCacheStats {
  size: number;
  hits: number;
  misses: number;
}

/** A JWT verifier with its verified-token cache. */
export interface JwtVerifier {
  /** Verifies a compact JWT; rejects with an {@link AuthError}. */
  verify(token: string): Promise<VerifiedJwt>;
  /** Forgets every verified token (the JWKS cache is jose's and is kept). */
  clearCache(): void;
  cacheStats(): JwtCacheStats;
  /** False while the identity provider's JWKS cannot be fetched (since the last attempt failed), for /healthz. */
  jwksAvailable(): boolean;
}

/** Asymmetric JWS algorithms jose can verify against a JWKS. HMAC is left out on purpose. */
const SIGNING_ALGORITHMS = new Set(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"]);
const CACHE_MAX = 10_000;
const CACHE_TTL_SEC = 300;
const ROLES = new Set(["admin", "developer", "user"]);

/** Creates a verifier for one identity provider (or the development issuer's local key set). */
export function createJwtVerifier(opts: JwtVerifierOptions): JwtVerifier {
  checkAlgorithms(opts.algorithms);
  const now = opts.now ?? Date.now;
  const tolerance = opts.clockToleranceSec ?? 30;
  const projectClaim = opts.projectClaim ?? "project_id";
  const roleClaim = opts.roleClaim ?? "role";
  const jwksState = { available: true };
  const getKey = keyResolver(opts, jwksState);
  const cache = new TokenCache(opts.cacheMaxEntries ?? CACHE_MAX);
  // Concurrent first calls with the same token share one verification.
  const inflight = new Map<string, Promise<VerifiedJwt>>();

  async function verifyUncached(token: string): Promise<VerifiedJwt> {
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new AuthError("TOKEN_MALFORMED", "token is malformed");
    }
    if (typeof header.alg !== "string" || header.alg === "") throw new AuthError("TOKEN_MALFORMED", "token is malformed: its header has no alg");
    // jose would refuse it too, but only with a generic message: name the algorithm.
    if (!opts.algorithms.includes(header.alg)) {
      throw new AuthError("TOKEN_ALG_NOT_ALLOWED", `token algorithm ${printable(header.alg) ?? "(unprintable)"} is not allowed`);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        algorithms: opts.algorithms,
        issuer: opts.issuer,
        audience: opts.audience,
        requiredClaims: ["exp", "sub"],
        clockTolerance: tolerance,
        currentDate: new Date(now()),
      }));
    } catch (err) {
      throw toAuthError(err);
    }
    return identityOf(payload, projectClaim, roleClaim);
  }

  return {
    async verify(token) {
      if (typeof token !== "string" || token === "") throw new AuthError("TOKEN_MISSING", "token is missing");
      const key = createHash("sha256").update(token).digest("base64url");
      const nowSec = now() / 1000;
      const hit = cache.get(key);
      if (hit) {
        // Checked on every hit, not only at eviction: a cached token never outlives exp (+ tolerance).
        if (nowSec >= hit.jwt.expiresAt + tolerance) {
          cache.delete(key);
          throw new AuthError("TOKEN_EXPIRED", "token expired");
        }
        if (nowSec < hit.recheckAt) {
          cache.hits++;
          return hit.jwt;
        }
        cache.delete(key);
      }
      let pending = inflight.get(key);
      if (!pending) {
        cache.misses++;
        pending = verifyUncached(token).finally(() => inflight.delete(key));
        inflight.set(key, pending);
      }
      const jwt = await pending;
      cache.set(key, { jwt, recheckAt: Math.min(jwt.expiresAt + tolerance, nowSec + CACHE_TTL_SEC) });
      return jwt;
    },
    clearCache: () => cache.clear(),
    cacheStats: () => ({ size: cache.size, hits: cache.hits, misses: cache.misses }),
    jwksAvailable: () => jwksState.available,
  };
}

function checkAlgorithms(algorithms: string[]): void {
  if (!Array.isArray(algorithms) || algorithms.length === 0) throw new Error("JWT verifier needs at least one algorithm");
  for (const alg of algorithms) {
    // HMAC verifies with the signing secret: with a JWKS, that "secret" would be a public key anyone has.
    if (/^HS\d+$/i.test(alg)) throw new Error(`JWT algorithm ${alg} is not allowed: HMAC cannot be verified against a public key set`);
    if (alg.toLowerCase() === "none") throw new Error("JWT algorithm none is not allowed: unsigned tokens prove nothing");
    if (!SIGNING_ALGORITHMS.has(alg)) throw new Error(`JWT algorithm ${alg} is not supported; use one of ${[...SIGNING_ALGORITHMS].join(", ")}`);
  }
}

/**
 * jose's key resolver, with its failures already told apart: an unknown kid
 * is the token's problem, anything else (fetch, timeout, non-200, bad JSON,
 * a bad key in the set) is the identity provider's and is worth a retry.
 */
function keyResolver(opts: JwtVerifierOptions, state: { available: boolean }): JWTVerifyGetKey {
  if (opts.jwks && opts.jwksUrl) throw new Error("give the JWT verifier a JWKS URL or a key set, not both");
  if (!opts.jwks && !opts.jwksUrl) throw new Error("the JWT verifier needs a JWKS URL or a key set");
  const jwks = opts.jwks
    ? createLocalJWKSet(opts.jwks)
    : createRemoteJWKSet(new URL(opts.jwksUrl!), {
        cooldownDuration: opts.cooldownMs ?? 30_000,
        cacheMaxAge: opts.cacheMaxAgeMs ?? 10 * 60_000,
        timeoutDuration: opts.timeoutMs ?? 5_000,
      });
  return async (header, token) => {
    try {
      const key = await jwks(header, token);
      state.available = true;
      return key;
    } catch (err) {
      const kid = header.kid === undefined ? "(no kid)" : `kid=${printable(header.kid) ?? "(unprintable)"}`;
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) state.available = true;
      else state.available = false;
      if (err instanceof errors.JWKSNoMatchingKey) throw new AuthError("TOKEN_UNKNOWN_KID", `token signing key ${kid} is unknown`, { cause: err });
      // jose 6 requires exactly one match; it no longer tries each candidate.
      if (err instanceof errors.JWKSMultipleMatchingKeys) {
        throw new AuthError("TOKEN_UNKNOWN_KID", `token signing key ${kid} matches several keys of the identity provider`, { cause: err });
      }
      throw new AuthError("JWKS_UNAVAILABLE", "the identity provider's signing keys could not be fetched; try again later", { cause: err });
    }
  };
}

/** The identity in a verified payload; the project claim is required, an unknown role is dropped. */
function identityOf(payload: JWTPayload, projectClaim: string, roleClaim: string): VerifiedJwt {
  if (typeof payload.sub !== "string" || payload.sub === "") throw new AuthError("TOKEN_CLAIM_MISSING", "token sub claim must be a non-empty string");
  const project = payload[projectClaim] ?? payload.project;
  if (typeof project !== "string" || project === "") {
    const names = projectClaim === "project" ? "project" : `${projectClaim} (or project)`;
    throw new AuthError("TOKEN_CLAIM_MISSING", `token has no ${names} claim naming the project`);
  }
  const role = payload[roleClaim];
  const sid = payload.sid ?? payload.jti;
  // Frozen: the same object is handed to every caller that presents this token while it is cached.
  return Object.freeze({
    subject: payload.sub,
    projectId: project,
    role: typeof role === "string" && ROLES.has(role) ? (role as VerifiedJwt["role"]) : undefined,
    sessionId: typeof sid === "string" && sid !== "" ? sid : undefined,
    issuedAt: typeof payload.iat === "number" ? payload.iat : undefined,
    expiresAt: payload.exp!,
    claims: Object.freeze(payload),
  });
}

/** jose's errors, as a reason and a message a client can act on. */
function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  if (err instanceof errors.JWTExpired) return new AuthError("TOKEN_EXPIRED", "token expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    // jose's reasons: "missing", "invalid" (wrong type), "check_failed" (wrong value).
    if (err.reason === "missing") return new AuthError("TOKEN_CLAIM_MISSING", `token has no ${err.claim} claim`);
    if (err.reason === "invalid") return new AuthError("TOKEN_MALFORMED", `token is malformed: its ${err.claim} claim has the wrong type`);
    switch (err.claim) {
      case "iss":
        return new AuthError("TOKEN_WRONG_ISSUER", "token issuer is not accepted");
      case "aud":
        return new AuthError("TOKEN_WRONG_AUDIENCE", "token audience is not accepted");
      case "nbf":
        return new AuthError("TOKEN_NOT_YET_VALID", "token not yet valid");
      default:
        return new AuthError("TOKEN_MALFORMED", `token claim ${err.claim} is not accepted`);
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthError("TOKEN_BAD_SIGNATURE", "token signature is invalid");
  if (err instanceof errors.JOSEAlgNotAllowed) return new AuthError("TOKEN_ALG_NOT_ALLOWED", "token algorithm is not allowed");
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return new AuthError("TOKEN_MALFORMED", "token is malformed", { cause: err });
  }
  // jose also throws plain TypeErrors for input it cannot parse (bad base64url, non-ASCII).
  return new AuthError("TOKEN_MALFORMED", "token is malformed", { cause: err });
}

/** A header value (alg, kid) fit to quote back to the client, or undefined. */
function printable(value: unknown): string | undefined {
  return typeof value === "string" && /^[\w.:+/=-]{1,64}$/.test(value) ? value : undefined;
}

interface CacheEntry {
  jwt: VerifiedJwt;
  /** Epoch seconds after which the token is verified again (at most 5 minutes, never past exp). */
  recheckAt: number;
}

/** A bounded LRU of verified tokens: a Map keeps insertion order, so re-inserting on a hit is the LRU touch. */
class TokenCache {
  private readonly map = new Map<string, CacheEntry>();
  hits = 0;
  misses = 0;
  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  get(key: string): CacheEntry | undefined {
    const entry = this.map.get(key);
    if (entry) {
      this.map.delete(key);
      this.map.set(key, entry);
    }
    return entry;
  }

  set(key: string, entry: CacheEntry): void {
    this.map.delete(key);
    this.map.set(key, entry);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }

  delete(key: string): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
    this.hits = 0;
    this.misses = 0;
  }
}
