/**
 * The key format's hashing (src/keys/key-format.ts): only SHA-256 of the
 * secret is stored, and a presented secret is compared with it in constant
 * time. Checked against an independent SHA-256 (a Hash object).
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateKey, hashSecret, parseKey, secretMatches } from "../../src/keys/key-format.js";

describe("key hashing", () => {
  it("stores SHA-256 of the secret, lowercase hex", () => {
    for (const secret of ["", "a", "0123456789ABCDEFabcdef", "é∑"]) {
      expect(hashSecret(secret)).toBe(createHash("sha256").update(secret).digest("hex"));
    }
  });

  it("a generated key's secret matches its stored hash; any other secret or hash does not", () => {
    const { key, secretHash } = generateKey("live");
    const { secret } = parseKey(key)!;
    expect(secretMatches(secret, secretHash)).toBe(true);
    // One character off, in the secret or in the hash.
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "a" ? "b" : "a") + s.slice(i + 1);
    for (const i of [0, 10, secret.length - 1]) expect(secretMatches(flip(secret, i), secretHash)).toBe(false);
    for (const i of [0, 31, 63]) expect(secretMatches(secret, flip(secretHash, i))).toBe(false);
    // Truncated, extended or empty stored hashes never match.
    expect(secretMatches(secret, secretHash.slice(0, 62))).toBe(false);
    expect(secretMatches(secret, `${secretHash}00`)).toBe(false);
    expect(secretMatches(secret, "")).toBe(false);
  });
});
