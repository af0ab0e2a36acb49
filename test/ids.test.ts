/** Resource ids: length, alphabet, no repeats, and every character equally likely (pooled random bytes). */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { newId, newSortableId } from "../src/ids.js";

describe("newId", () => {
  it("makes distinct base36 ids of the asked length across many pool refills", () => {
    const ids = Array.from({ length: 20_000 }, () => newId());
    for (const id of ids) expect(id).toMatch(/^[0-9a-z]{16}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(newId(40)).toMatch(/^[0-9a-z]{40}$/);
  });

  it("uses every character about equally often", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 22_500; i++) for (const c of newId()) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(36);
    // 360,000 characters: 10,000 expected each, a standard deviation of ~99; 6% off is > 6 sigma.
    for (const n of counts.values()) expect(Math.abs(n - 10_000)).toBeLessThan(600);
  });
});

describe("newSortableId", () => {
  it("is 20 base36 characters, distinct, and sorts by the millisecond it was made in", () => {
    const ids = Array.from({ length: 20_000 }, () => newSortableId());
    for (const id of ids) expect(id).toMatch(/^[0-9a-z]{20}$/);
    expect(new Set(ids).size).toBe(ids.length);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 36 ** 9 - 1 }), fc.integer({ min: 0, max: 36 ** 9 - 1 }), (a, b) => {
        fc.pre(a !== b);
        expect(newSortableId(a) < newSortableId(b)).toBe(a < b);
      }),
    );
  });
});
