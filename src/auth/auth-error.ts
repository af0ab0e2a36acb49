/** Why a credential was refused; the interceptor turns it into UNAUTHENTICATED with the message. */
export type AuthFailure =
  | "TOKEN_MISSING"
  | "TOKEN_MALFORMED"
  | "TOKEN_EXPIRED"
  | "TOKEN_NOT_YET_VALID"
  | "TOKEN_WRONG_ISSUER"
  | "TOKEN_WRONG_AUDIENCE"
  | "TOKEN_BAD_SIGNATURE"
  | "TOKEN_ALG_NOT_ALLOWED"
  | "TOKEN_UNKNOWN_KID"
  | "TOKEN_CLAIM_MISSING"
  | "TOKEN_CLAIM_INVALID"
  | "WALLET_NOT_BOUND"
  | "SESSION_REVOKED"
  | "JWKS_UNAVAILABLE";

/**
 * A refused credential. The message goes to the client, so it says why and
 * never carries the token or a stack; the underlying error (a fetch failure,
 * jose's own error) rides along as `cause` for server-side logs only.
 */
export class AuthError extends Error {
  constructor(
    readonly reason: AuthFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "AuthError";
  }
}
