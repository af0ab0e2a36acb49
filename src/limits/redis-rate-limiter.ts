/**
 * The rate limiter shared by every instance: GCRA with the bucket's
 * theoretical arrival time in Redis, read, decided and written by one Lua
 * script (one atomic step per decision, so concurrent instances cannot both
 * take the last request). Times come from the callers' clocks (instances keep
 * them in sync, as they do for token expiry).
 *
 * Redis unreachable or slow: the decision is made by an in-process limiter
 * instead, per instance — the limit then holds per instance, never unlimited.
 */
import type { SharedState } from "../cluster/shared-state.js";
import type { Logger } from "../logger.js";
import { type RateDecision, type RateLimit, type RateLimiter, LocalRateLimiter, gcra } from "./rate-limiter.js";

/**
 * KEYS[1] bucket; ARGV now, interval (ms per request), burst. Returns
 * {allowed 0|1, the tat read (string, "" if none)}; the caller recomputes the
 * header figures from the same inputs with `gcra`. The arithmetic is `gcra`'s.
 */
const GCRA_LUA = `
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local base = now
if stored then
  local tat = tonumber(stored)
  if tat > now then base = tat end
end
local newTat = base + interval
if newTat - interval * burst > now then
  return {0, stored or ''}
end
redis.call('SET', KEYS[1], string.format('%.17g', newTat), 'PX', math.ceil(newTat - now) + 1000)
return {1, stored or ''}
`;

type GcraCommand = (key: string, now: number, interval: number, burst: number) => Promise<[number, string]>;

export class RedisRateLimiter implements RateLimiter {
  private readonly script: GcraCommand;
  private warnedAt = Number.NEGATIVE_INFINITY;
  /** Decisions made in-process because a Redis call failed (for tests and operators). */
  localDecisions = 0;

  constructor(
    private readonly shared: SharedState,
    /** Decides while Redis is unreachable. */
    private readonly fallback: RateLimiter = new LocalRateLimiter(),
    private readonly log?: Logger,
  ) {
    shared.client.defineCommand("formstateGcra", { numberOfKeys: 1, lua: GCRA_LUA });
    const client = shared.client as unknown as { formstateGcra: GcraCommand };
    this.script = (...args) => client.formstateGcra(...args);
  }

  async take(key: string, limit: RateLimit, now: number): Promise<RateDecision> {
    if (this.shared.status() !== "connected") return this.fallback.take(key, limit, now);
    let reply: [number, string];
    try {
      reply = await this.script(`${this.shared.prefix}rl:${key}`, now, 1000 / limit.requestsPerSecond, limit.burst);
    } catch (err) {
      // A timeout or a lost connection mid-call: this decision is local. Said at most once a second.
      if (now - this.warnedAt >= 1_000) {
        this.warnedAt = now;
        this.log?.warn({ err, bucket: key }, "rate limit decided in-process: redis did not answer in time");
      }
      this.localDecisions++;
      return this.fallback.take(key, limit, now);
    }
    const [allowed, stored] = reply;
    const { decision } = gcra(stored === "" ? undefined : Number(stored), limit, now);
    // Redis decided; the figures for the headers come from the same inputs.
    return { ...decision, allowed: allowed === 1, ...(allowed === 1 ? { retryAfterMs: 0 } : { remaining: 0 }) };
  }
}
