/**
 * The API key format: `fs_live_` or `fs_test_`, a public key id, a secret of
 * 131 random bits, and a CRC32 checksum, all base62:
 *
 *   fs_live_<id:16, lowercase base36>_<secret:22><crc:6>
 *
 * The id is lowercase so it can be the last segment of the key's resource
 * name (`accounts/{project}/apiKeys/{id}`).
 *
 * The checksum rejects a mistyped or truncated key without a database read;
 * only SHA-256 of the secret is stored (a slow password hash would only slow
 * every request: the secret has full entropy).
 */
import crypto, { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { crc32 } from "node:zlib";
import { newId } from "../ids.js";

export type KeyEnvironment = "live" | "test";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_LEN = 16; // 82 bits: ids are public, but must not collide
const SECRET_LEN = 22; // 22 base62 chars = 131 bits
const CRC_LEN = 6; // 62^6 > 2^32
const KEY_RE = /^fs_(live|test)_([0-9a-z]{16})_([0-9A-Za-z]{22})([0-9A-Za-z]{6})$/;

/** Uniform random characters of an alphabet (rejection sampling: no modulo bias). */
function randomChars(alphabet: string, length: number): string {
  const limit = 256 - (256 % alphabet.length);
  let out = "";
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < limit) out += alphabet[b % alphabet.length];
      if (out.length === length) break;
    }
  }
  return out;
}

function base62(n: number, width: number): string {
  let s = "";
  for (let i = 0; i < width; i++) {
    s = ALPHABET[n % 62] + s;
    n = Math.floor(n / 62);
  }
  return s;
}

function checksum(body: string): string {
  return base62(crc32(body), CRC_LEN);
}

export interface ParsedKey {
  environment: KeyEnvironment;
  keyId: string;
  secret: string;
}

/** A key string from its parts, checksum appended (used to tell a swapped environment from a typo in tests and tools). */
export function formatKey(environment: KeyEnvironment, keyId: string, secret: string): string {
  const body = `fs_${environment}_${keyId}_${secret}`;
  return body + checksum(body);
}

/** A new key: the full string (shown once), its id, and the hash to store. */
export function generateKey(environment: KeyEnvironment, keyId = newKeyId()) {
  const secret = randomChars(ALPHABET, SECRET_LEN);
  const body = `fs_${environment}_${keyId}_${secret}`;
  return { key: body + checksum(body), keyId, secretHash: hashSecret(secret) };
}

export function newKeyId(): string {
  return newId(ID_LEN);
}

/** Parses a key and checks its checksum; undefined for anything malformed. */
export function parseKey(key: string): ParsedKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m) return undefined;
  const body = key.slice(0, key.length - CRC_LEN);
  if (checksum(body) !== m[4]) return undefined;
  return { environment: m[1] as KeyEnvironment, keyId: m[2], secret: m[3] };
}

/** Node's one-shot `crypto.hash` (20.12+: no Hash object per call), else a Hash. */
const sha256Hex: (data: string) => string =
  typeof crypto.hash === "function" ? (data) => crypto.hash("sha256", data, "hex") : (data) => createHash("sha256").update(data).digest("hex");

/** SHA-256 of the secret, hex. */
export function hashSecret(secret: string): string {
  return sha256Hex(secret);
}

/**
 * Compares a presented secret with a stored hash in constant time: the two
 * hex digests' characters (fixed length: 64), compared whole by
 * timingSafeEqual. (Hashes are stored as `hashSecret` writes them: lowercase.)
 */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), "latin1");
  const b = Buffer.from(storedHash, "latin1");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The visible start of a key, for lists: `fs_live_<id>` (the id is public; no secret character is shown). */
export function keyStart(environment: KeyEnvironment, keyId: string): string {
  return `fs_${environment}_${keyId}`;
}

export const KEY_LENGTHS = { ID_LEN, SECRET_LEN, CRC_LEN };
