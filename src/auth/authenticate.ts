/**
 * The authentication interceptor: finds the credential in the headers (gRPC
 * metadata alike), verifies it once, and puts the principal in the call's
 * context values. Handlers never read auth headers.
 */
import { type HandlerContext, type Interceptor, createContextKey } from "@connectrpc/connect";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { unauthenticated, unavailable } from "../errors.js";
import { authorize, policyOf } from "./access-policy.js";
import { INVALID_KEY } from "../keys/api-keys.js";
import { AuthError } from "./auth-error.js";
import type { JwtVerifier, VerifiedJwt } from "./jwt-verifier.js";
import { arrivalKey, clientIpKey } from "../server/client-ip.js";
import { type Principal, parseRole, principalKey } from "./principal.js";
import { type SessionSeen, sessionIdOf } from "../sessions/sessions.js";
import { walletIssuerOf } from "../wallets/wallet-token.js";

/** API keys are told from JWTs by their prefix. */
export const API_KEY_PREFIXES = ["fs_live_", "fs_test_"];

/** Whether a credential has an API key's prefix (a loop, not a closure per call: every call asks). */
function hasKeyPrefix(credential: string): boolean {
  for (const p of API_KEY_PREFIXES) if (credential.startsWith(p)) return true;
  return false;
}

export interface AuthenticateDeps {
  /** The JWT verifier; a function so the dev issuer's URL can be known after listen. */
  jwt: () => JwtVerifier;
  /** A user's role in a project from the members table, when the token has none. */
  memberRole(projectId: string, userId: string): Promise<string | undefined>;
  /**
   * Authenticates a Formstate API key presented from an address; `since`, the request's arrival stamp
   * (src/server/client-ip.ts arrivalKey), lets the exact key cache reuse a check made after it.
   */
  apiKey(key: string, clientIp: string, since?: number): Promise<Principal>;
  /** Authenticates a wallet-signed token (its iss is a CAIP-10 account id). */
  walletToken?(token: string): Promise<Principal>;
  /** Refuses identity-provider tokens of revoked sessions (AuthError SESSION_REVOKED). */
  admitSession?(seen: SessionSeen): Promise<void>;
  /** The project's environment: `test` marks every caller of a test-mode project (docs/test-mode.md). */
  projectEnvironment?(projectId: string): Promise<"live" | "test">;
}

/** The credential a request carries, if any. */
export function credentialOf(header: Headers): string | undefined {
  const apiKey = header.get("x-api-key");
  if (apiKey) {
    const key = apiKey.trim();
    // x-api-key only ever carries keys: anything else is an invalid key, not a JWT.
    if (!hasKeyPrefix(key)) throw unauthenticated(INVALID_KEY, "API_KEY_INVALID");
    return key;
  }
  const authz = header.get("authorization");
  if (!authz) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(authz.trim());
  if (!m) throw unauthenticated("authorization header must be \"Bearer <token or API key>\"", "TOKEN_MALFORMED");
  return m[1].trim();
}

export function createAuthenticateInterceptor(deps: AuthenticateDeps): Interceptor {
  return (next) => async (req) => {
    const credential = credentialOf(req.header);
    if (credential === undefined) {
      if (!policyOf(req.method)?.public) throw unauthenticated("missing credential: send Authorization: Bearer <token> or x-api-key", "TOKEN_MISSING");
      req.contextValues.set(principalKey, { kind: "anonymous" });
      return next(req);
    }
    const clientIp = req.contextValues.get(clientIpKey);
    req.contextValues.set(principalKey, await resolve(deps, credential, clientIp, req.contextValues.get(arrivalKey)));
    // A stream outlives the check above: it may check the same credential again while it runs (afresh: no arrival stamp).
    if (req.stream) req.contextValues.set(recheckKey, () => resolve(deps, credential, clientIp));
    return next(req);
  };
}

const recheckKey = createContextKey<(() => Promise<Principal>) | undefined>(undefined, { description: "credential recheck" });

/**
 * For long-lived streams: verifies the call's credential again (a revoked or
 * expired key, token or session is UNAUTHENTICATED) and the method's access
 * policy against what it grants now (a lost role is PERMISSION_DENIED). The
 * project cannot change: it is the credential's.
 */
export async function recheckCaller(ctx: HandlerContext): Promise<void> {
  const recheck = ctx.values.get(recheckKey);
  // Only a stream served without the interceptor gets here: fail closed.
  if (!recheck) throw unauthenticated("this stream's credential cannot be checked again", "TOKEN_MISSING");
  authorize(ctx.method, await recheck());
}

/** The principal of a credential; `since`: the request's arrival stamp, if it is read for one request now. */
export async function resolve(deps: AuthenticateDeps, credential: string, clientIp: string, since?: number): Promise<Principal> {
  const principal = await resolveCredential(deps, credential, clientIp, since);
  // A test-mode project's callers, people and keys alike, all act in test mode.
  // (A copy: a key's principal may be shared between calls.)
  if (principal.kind !== "anonymous" && deps.projectEnvironment && (await deps.projectEnvironment(principal.projectId)) === "test") return { ...principal, testProject: true };
  return principal;
}

async function resolveCredential(deps: AuthenticateDeps, credential: string, clientIp: string, since: number | undefined): Promise<Principal> {
  if (hasKeyPrefix(credential)) return deps.apiKey(credential, clientIp, since);
  try {
    if (deps.walletToken && walletIssuerOf(credential) !== undefined) return await deps.walletToken(credential);
    return await resolveJwt(deps, credential);
  } catch (err) {
    // The identity provider down is not the caller's fault: UNAVAILABLE, which clients retry.
    if (err instanceof AuthError) throw err.reason === "JWKS_UNAVAILABLE" ? unavailable(err.message, err.reason) : unauthenticated(err.message, err.reason);
    throw err;
  }
}

async function resolveJwt(deps: AuthenticateDeps, credential: string): Promise<Principal> {
  const jwt: VerifiedJwt = await deps.jwt().verify(credential);
  await deps.admitSession?.({
    projectId: jwt.projectId,
    kind: "idp",
    subject: jwt.subject,
    sessionId: jwt.sessionId === undefined ? undefined : sessionIdOf("idp", `${jwt.projectId}\n${jwt.subject}`, jwt.sessionId),
    issuedAtMs: jwt.issuedAt === undefined ? undefined : jwt.issuedAt * 1000,
    expireTime: jwt.expiresAt * 1000,
  });
  // The IdP's role claim wins; without one, the members table; without a membership, user
  // (the IdP vouches that the subject belongs to the project it names).
  let role = parseRole(jwt.role);
  let roleSource: "token" | "member" | "default" = "token";
  if (role === undefined) {
    role = parseRole(await deps.memberRole(jwt.projectId, jwt.subject));
    roleSource = role === undefined ? "default" : "member";
  }
  return {
    kind: "user",
    subject: jwt.subject,
    projectId: jwt.projectId,
    role: role ?? Role.USER,
    roleSource,
    sessionId: jwt.sessionId,
    expiresAt: jwt.expiresAt,
  };
}
