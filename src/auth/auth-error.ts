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
  | "JWKS_UNAVAILABLE";

/** A refused credential. Messages are safe for clients: never the token, never a stack. */
export class AuthError extends Error {
  constructor(
    readonly reason: AuthFailure,
    message: string,
  ) {
    super(message);
    this.name = "AuthError";
  }
}
