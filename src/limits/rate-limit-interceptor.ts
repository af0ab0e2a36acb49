/**
 * The per-key rate limit interceptor: each API key (and each signed-in
 * subject) is limited by its plan's requests per second with burst, or the
 * key's override; callers without credentials (public methods) per client IP. Every answer carries x-ratelimit-* headers; a refused call
 * gets RESOURCE_EXHAUSTED with a RetryInfo detail and retry-after.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { LimitExceededSchema, LimitReason, RetryInfoSchema } from "../../gen/formstate/v1/errors_pb.js";
import { RetryInfoSchema as GoogleRetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { errorInfo } from "../errors.js";
import { type Principal, principalKey } from "../auth/principal.js";
import type { Clock } from "../clock.js";
import type { Plan } from "../plans/plans.js";
import { clientIpKey } from "../server/client-ip.js";
import type { RateDecision, RateLimit, RateLimiter } from "./rate-limiter.js";

export interface RateLimitDeps {
  limiter: RateLimiter;
  clock: Clock;
  planOf(projectId: string): Promise<Plan>;
  /** Called when a key is refused, for the audit log. */
  onLimited?(keyId: string, ip: string): void;
  /** Every decision, for metrics. */
  onDecision?(allowed: boolean): void;
  /** The limit for callers without credentials (public methods), per client IP; none or 0 rps = not limited. */
  anonymous?: RateLimit;
}

/** The bucket and limit for a principal; anonymous callers (public methods) by their IP. */
async function bucketOf(p: Principal, ip: string, deps: RateLimitDeps): Promise<{ bucket: string; limit: RateLimit } | undefined> {
  if (p.kind === "anonymous") return deps.anonymous && deps.anonymous.requestsPerSecond > 0 ? { bucket: `ip:${ip}`, limit: deps.anonymous } : undefined;
  const plan = await deps.planOf(p.projectId);
  if (p.kind === "api_key") return { bucket: `key:${p.keyId}`, limit: p.rateLimit ?? plan.rateLimit };
  return { bucket: `user:${p.projectId}:${p.subject}`, limit: plan.rateLimit };
}

/** The x-ratelimit-* headers of a decision, set on `h` (answers and refusals alike). */
function setRateHeaders(h: Headers, d: RateDecision): Headers {
  h.set("x-ratelimit-limit", String(d.limit));
  h.set("x-ratelimit-remaining", String(d.remaining));
  h.set("x-ratelimit-reset", String(Math.ceil(d.resetMs / 1000)));
  return h;
}

export function createRateLimitInterceptor(deps: RateLimitDeps): Interceptor {
  return (next) => async (req) => {
    const principal = req.contextValues.get(principalKey);
    // Health checks are load balancers' probes, often many behind one address: never limited.
    if (req.service.typeName === "grpc.health.v1.Health") return next(req);
    const target = await bucketOf(principal, req.contextValues.get(clientIpKey), deps);
    if (!target) return next(req);
    const d = await deps.limiter.take(target.bucket, target.limit, deps.clock.now());
    deps.onDecision?.(d.allowed);
    if (!d.allowed) {
      if (principal.kind === "api_key") deps.onLimited?.(principal.keyId, req.contextValues.get(clientIpKey));
      const retrySec = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
      throw new ConnectError(
        `rate limit exceeded: ${target.limit.requestsPerSecond} requests per second (burst ${target.limit.burst}); retry after ${d.retryAfterMs} ms`,
        Code.ResourceExhausted,
        setRateHeaders(new Headers({ "retry-after": String(retrySec) }), d),
        [
          // google.rpc.RetryInfo for standard tooling; ours adds the limit and its window.
          { desc: GoogleRetryInfoSchema, value: create(GoogleRetryInfoSchema, { retryDelay: durationFromMs(d.retryAfterMs) }) },
          errorInfo("RATE_LIMITED", { limit_rps: String(target.limit.requestsPerSecond), burst: String(target.limit.burst) }),
          { desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(d.retryAfterMs), limit: BigInt(target.limit.burst), window: durationFromMs(Math.round((1000 * target.limit.burst) / target.limit.requestsPerSecond)) }) },
          { desc: LimitExceededSchema, value: create(LimitExceededSchema, { reason: LimitReason.RATE_LIMITED, limit: BigInt(target.limit.burst), used: BigInt(target.limit.burst), requested: 1n }) },
        ],
      );
    }
    const res = await next(req);
    setRateHeaders(res.header, d);
    return res;
  };
}
