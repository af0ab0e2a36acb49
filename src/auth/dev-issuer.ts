/**
 * The built-in development identity provider: an Ed25519 (or ES256) key pair
 * kept in the data directory (mode 0600), its public JWKS served by the
 * server itself, and tokens signed like an IdP's. Never used in production.
 */
import { randomUUID } from "node:crypto";
import { chmodSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type JWK, SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK } from "jose";

/** The development issuer: its public keys and a signer. */
export interface DevIssuer {
  readonly issuer: string;
  readonly audience: string;
  /** The kid of the signing key (stable across restarts: it is stored with the key). */
  readonly kid: string;
  readonly alg: DevIssuerAlgorithm;
  /** The public key set, as served at /.well-known/jwks.json. Never includes private members. */
  jwks(): { keys: JWK[] };
  /** A signed JWT with iss, aud, sub, project_id, role, iat, nbf, exp, jti and sid. */
  sign(opts: { subject: string; projectId: string; role?: string; ttlSec?: number; sessionId?: string }): Promise<string>;
}

/** The algorithms the development key may use. */
export type DevIssuerAlgorithm = "EdDSA" | "ES256";

/** The key file's name inside the data directory. */
export const DEV_ISSUER_KEY_FILE = "dev-issuer-key.json";

const DEFAULT_TTL_SEC = 12 * 3600;

/**
 * Loads the development key from `${dataDir}/dev-issuer-key.json`, creating
 * it (and the directory) on first use. `algorithm` only applies to a new key;
 * an existing file keeps its own.
 */
export async function loadDevIssuer(opts: {
  dataDir: string;
  issuer: string;
  audience: string;
  now?: () => number;
  algorithm?: DevIssuerAlgorithm;
}): Promise<DevIssuer> {
  const file = join(opts.dataDir, DEV_ISSUER_KEY_FILE);
  const privateJwk = (await readKeyFile(file)) ?? (await createKeyFile(file, opts.dataDir, opts.algorithm ?? "EdDSA"));
  const alg = algorithmOf(privateJwk, file);
  const key = await importJWK(privateJwk, alg);
  const publicJwk = publicPart(privateJwk, alg);
  const now = opts.now ?? Date.now;
  return {
    issuer: opts.issuer,
    audience: opts.audience,
    kid: publicJwk.kid!,
    alg,
    // A copy each time: callers serialise it, and must not be able to edit the issuer's key set.
    jwks: () => ({ keys: [{ ...publicJwk }] }),
    async sign({ subject, projectId, role, ttlSec = DEFAULT_TTL_SEC, sessionId }) {
      if (!subject) throw new Error("dev issuer: subject is required");
      if (!projectId) throw new Error("dev issuer: projectId is required");
      if (!Number.isInteger(ttlSec) || ttlSec <= 0) throw new Error("dev issuer: ttlSec must be a positive whole number of seconds");
      const iat = Math.floor(now() / 1000);
      return new SignJWT({ project_id: projectId, ...(role && { role }), sid: sessionId ?? randomUUID() })
        .setProtectedHeader({ alg, kid: publicJwk.kid, typ: "JWT" })
        .setIssuer(opts.issuer)
        .setAudience(opts.audience)
        .setSubject(subject)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + ttlSec)
        .setJti(randomUUID())
        .sign(key);
    },
  };
}

/** The stored private JWK, or undefined when there is none yet. */
async function readKeyFile(file: string): Promise<JWK | undefined> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  // A private key readable by others is tightened rather than refused: it is our own file.
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new Error(`${file} is not valid JSON; delete it to create a new development key`);
  }
  if (typeof jwk !== "object" || jwk === null || typeof jwk.d !== "string" || typeof jwk.kid !== "string" || jwk.kid === "") {
    throw new Error(`${file} is not a private JWK with a kid; delete it to create a new development key`);
  }
  return jwk;
}

/**
 * Generates a key and stores it with mode 0600. The file appears atomically
 * (written aside, then hard-linked into place), so a server and `npm run
 * token` starting together agree on one key: the loser reads the winner's.
 */
async function createKeyFile(file: string, dataDir: string, alg: DevIssuerAlgorithm): Promise<JWK> {
  mkdirSync(dataDir, { recursive: true });
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === "EdDSA" && { crv: "Ed25519" }) });
  const jwk = await exportJWK(privateKey);
  // The RFC 7638 thumbprint: a kid derived from the key itself.
  const privateJwk: JWK = { ...jwk, kid: await calculateJwkThumbprint(jwk), alg, use: "sig" };
  const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  writeFileSync(tmp, JSON.stringify(privateJwk), { mode: 0o600, flag: "wx" });
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return (await readKeyFile(file))!;
  } finally {
    unlinkSync(tmp);
  }
  return privateJwk;
}

function algorithmOf(jwk: JWK, file: string): DevIssuerAlgorithm {
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && (jwk.alg === undefined || jwk.alg === "EdDSA")) return "EdDSA";
  if (jwk.kty === "EC" && jwk.crv === "P-256" && (jwk.alg === undefined || jwk.alg === "ES256")) return "ES256";
  throw new Error(`${file} holds a ${jwk.kty}/${jwk.crv} key for ${jwk.alg}; the development issuer signs with Ed25519 (EdDSA) or P-256 (ES256)`);
}

/** The public members only, by allowlist: whatever else the file holds stays private. */
function publicPart(jwk: JWK, alg: DevIssuerAlgorithm): JWK {
  const base = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  return { ...base, ...(jwk.kty === "EC" && { y: jwk.y }), kid: jwk.kid, alg, use: "sig" };
}

/** A server signing key for other signatures than tokens (receipts): its algorithm, kid, private key and public JWK. */
export interface SigningKey {
  alg: DevIssuerAlgorithm;
  kid: string;
  key: Awaited<ReturnType<typeof importJWK>>;
  publicJwk: JWK;
}

/**
 * Loads a signing key from `file`, creating it on first use the way the
 * development key is made (mode 0600, atomic, a thumbprint kid).
 */
export async function loadSigningKey(file: string, dir: string, algorithm: DevIssuerAlgorithm = "EdDSA"): Promise<SigningKey> {
  const privateJwk = (await readKeyFile(file)) ?? (await createKeyFile(file, dir, algorithm));
  const alg = algorithmOf(privateJwk, file);
  return { alg, kid: privateJwk.kid!, key: await importJWK(privateJwk, alg), publicJwk: publicPart(privateJwk, alg) };
}
