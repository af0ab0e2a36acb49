/**
 * The Redis limiter against a real Redis: two limiters (two instances' worth
 * of connections) deciding on one bucket at once never allow more than the
 * bucket holds; the bucket refills at the configured rate.
 */
import { randomBytes } from "node:crypto";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { SharedState } from "../../src/cluster/shared-state.js";
import { RedisRateLimiter } from "../../src/limits/redis-rate-limiter.js";
import { REDIS_URL, missingParts } from "./cluster.js";

const missing = await missingParts();
if (missing && process.env.CI === "true") {
  it("needs PostgreSQL and Redis under CI", () => {
    throw new Error(`missing: ${missing}`);
  });
} else if (missing) {
  console.warn(`skipping the Redis limiter test: missing ${missing}`);
}

describe.skipIf(Boolean(missing))("RedisRateLimiter", () => {
  const prefix = `rltest:${randomBytes(4).toString("hex")}:`;
  const states = [new SharedState(REDIS_URL, prefix, pino({ level: "silent" })), new SharedState(REDIS_URL, prefix, pino({ level: "silent" }))];
  afterAll(async () => {
    await Promise.all(states.map((s) => s.close()));
  });

  it("400 concurrent decisions from two limiters on one bucket allow exactly the burst, then the rate", async () => {
    await Promise.all(states.map((s) => s.ready(5_000)));
    expect(states.map((s) => s.status())).toEqual(["connected", "connected"]);
    const limiters = states.map((s) => new RedisRateLimiter(s));
    const limit = { requestsPerSecond: 10, burst: 25 };
    const now = 1_000_000_000;
    const decisions = await Promise.all(Array.from({ length: 400 }, (_, i) => limiters[i % 2].take("bucket", limit, now)));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(25);
    const refused = decisions.filter((d) => !d.allowed);
    expect(refused.every((d) => d.remaining === 0 && d.retryAfterMs > 0 && d.retryAfterMs <= 100)).toBe(true);
    // 1 s later: 10 more (the rate), not a new burst.
    const later = await Promise.all(Array.from({ length: 50 }, (_, i) => limiters[i % 2].take("bucket", limit, now + 1_000)));
    expect(later.filter((d) => d.allowed)).toHaveLength(10);
  });
});
