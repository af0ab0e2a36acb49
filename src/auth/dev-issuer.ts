/**
 * The built-in development identity provider: an Ed25519 key pair kept in
 * the data directory (mode 0600), its public JWKS served by the server itself,
 * and tokens signed like an IdP's. Never used in production mode.
 */
import { randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type JWK, SignJWT, exportJWK, generateKeyPair, importJWK } from "jose";

export interface DevIssuer {
  readonly issuer: string;
  readonly audience: string;
  /** The public key set, as served at /.well-known/jwks.json. */
  jwks(): { keys: JWK[] };
  sign(opts: { subject: string; projectId: string; role?: string; ttlSec?: number; sessionId?: string }): Promise<string>;
}

const ALG = "EdDSA";

export async function loadDevIssuer(opts: { dataDir: string; issuer: string; audience: string; now?: () => number }): Promise<DevIssuer> {
  const file = join(opts.dataDir, "dev-issuer-key.json");
  let privateJwk: JWK;
  if (existsSync(file)) {
    privateJwk = JSON.parse(readFileSync(file, "utf8")) as JWK;
  } else {
    mkdirSync(opts.dataDir, { recursive: true });
    const { privateKey } = await generateKeyPair(ALG, { crv: "Ed25519", extractable: true });
    privateJwk = { ...(await exportJWK(privateKey)), kid: `dev-${randomUUID().slice(0, 8)}`, alg: ALG, use: "sig" };
    writeFileSync(file, JSON.stringify(privateJwk), { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  const key = await importJWK(privateJwk, ALG);
  const { d: _private, ...publicJwk } = privateJwk;
  const now = opts.now ?? Date.now;
  return {
    issuer: opts.issuer,
    audience: opts.audience,
    jwks: () => ({ keys: [publicJwk] }),
    async sign({ subject, projectId, role, ttlSec = 12 * 3600, sessionId }) {
      const iat = Math.floor(now() / 1000);
      const jwt = new SignJWT({ project_id: projectId, ...(role && { role }), sid: sessionId ?? randomUUID() })
        .setProtectedHeader({ alg: ALG, kid: privateJwk.kid, typ: "JWT" })
        .setIssuer(opts.issuer)
        .setAudience(opts.audience)
        .setSubject(subject)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + ttlSec)
        .setJti(randomUUID());
      return jwt.sign(key);
    },
  };
}
