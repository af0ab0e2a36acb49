/**
 * Per-key rate limiting with GCRA (the generic cell rate algorithm): one
 * number of state per key (the theoretical arrival time), O(1) per decision,
 * no timers. Behind an interface so a shared store (Redis) can back it.
 */

export interface RateLimit {
  /** Sustained requests per second. */
  requestsPerSecond: number;
  /** Requests allowed at once from idle. */
  burst: number;
}

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** Requests that could be made right now. */
  remaining: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
  /** When refused: milliseconds until one request is allowed. */
  retryAfterMs: number;
}

export interface RateLimiter {
  take(key: string, limit: RateLimit, nowMs: number): Promise<RateDecision> | RateDecision;
}

/**
 * The pure GCRA step: given the stored theoretical arrival time (tat), decide
 * and return the new tat. Shared by the in-process and the Redis limiter.
 */
export function gcra(tat: number | undefined, limit: RateLimit, now: number): { decision: RateDecision; tat: number } {
  const interval = 1000 / limit.requestsPerSecond;
  const tolerance = interval * limit.burst; // the bucket's depth in time
  const base = Math.max(tat ?? now, now);
  const newTat = base + interval;
  const allowAt = newTat - tolerance;
  if (allowAt > now) {
    const remaining = 0;
    return {
      decision: { allowed: false, limit: limit.burst, remaining, resetMs: Math.ceil(base - now), retryAfterMs: Math.ceil(allowAt - now) },
      tat: base,
    };
  }
  const remaining = Math.floor((now - allowAt) / interval);
  return {
    decision: { allowed: true, limit: limit.burst, remaining: Math.min(remaining, limit.burst), resetMs: Math.ceil(newTat - now), retryAfterMs: 0 },
    tat: newTat,
  };
}

/** The in-process limiter: a bounded Map of tats (least recently used evicted). */
export class LocalRateLimiter implements RateLimiter {
  private readonly tats = new Map<string, number>();
  constructor(private readonly maxKeys = 100_000) {}

  take(key: string, limit: RateLimit, now: number): RateDecision {
    const { decision, tat } = gcra(this.tats.get(key), limit, now);
    this.tats.delete(key);
    this.tats.set(key, tat);
    if (this.tats.size > this.maxKeys) this.tats.delete(this.tats.keys().next().value!);
    return decision;
  }
}
