import { randomFillSync } from "node:crypto";

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

/**
 * Random bytes drawn from the CSPRNG in 4 KiB batches: a RecordUsage makes
 * several ids, and a `randomBytes` call for each was 2.5% of its CPU profile
 * (as `crypto.randomUUID` does, one fill serves many ids).
 */
const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

function randomByte(): number {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  return pool[offset++];
}

/**
 * A random resource id: 16 lowercase base36 characters (82 bits), valid as
 * the last segment of a resource name.
 */
export function newId(length = 16): string {
  let out = "";
  while (out.length < length) {
    const b = randomByte();
    // 252 = 7 * 36: bytes above it are dropped so every character is equally likely.
    if (b < 252) out += ALPHABET[b % 36];
  }
  return out;
}
