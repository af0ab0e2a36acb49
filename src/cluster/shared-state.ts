/**
 * The connection to Redis (`REDIS_URL`), the state Formstate instances share
 * besides the database: rate-limit buckets and cache invalidations. Two
 * connections: one for commands, one subscribed to invalidations (Redis
 * reserves a subscribed connection for that).
 *
 * Redis unreachable is a mode, not a failure: commands fail fast (no offline
 * queue, a short timeout), callers fall back (see DEGRADED_* below), the
 * change is logged once each way and shown by `status()` (in /healthz).
 */
import { Redis } from "ioredis";
import type { Logger } from "../logger.js";

export type SharedStateStatus = "connected" | "degraded";

const DEGRADED_MESSAGE = "redis unreachable: falling back to in-process rate limits and a short key cache lifetime until it is back";

/**
 * How long one Redis command may take before the caller falls back. Not much
 * shorter: a process whose event loop stalls that long sees its timer fire
 * before it reads the answer, and a fallback decision is per instance.
 */
const COMMAND_TIMEOUT_MS = 1_000;

export class SharedState {
  readonly client: Redis;
  readonly subscriber: Redis;
  private state: SharedStateStatus = "degraded";
  private readonly listeners = new Set<(s: SharedStateStatus) => void>();
  private closed = false;

  constructor(
    url: string,
    /** Prepended to every key and channel. */
    readonly prefix: string,
    private readonly log: Logger,
  ) {
    const options = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: 2_000,
      // Keep trying in the background, at most every 2 s, for as long as the process runs.
      retryStrategy: (times: number) => Math.min(100 * 2 ** times, 2_000),
      lazyConnect: false,
    };
    this.client = new Redis(url, { ...options, connectionName: "formstate" });
    this.subscriber = new Redis(url, { ...options, commandTimeout: undefined, connectionName: "formstate-sub" });
    for (const conn of [this.client, this.subscriber]) {
      conn.on("ready", () => this.update());
      conn.on("close", () => this.update());
      conn.on("end", () => this.update());
      // Errors are reported once through the status change; ioredis retries by itself.
      conn.on("error", () => {});
    }
  }

  /** `connected` when both connections are ready; otherwise callers use their fallback. */
  status(): SharedStateStatus {
    return this.state;
  }

  /** Called on every change of status. */
  onChange(fn: (s: SharedStateStatus) => void): void {
    this.listeners.add(fn);
  }

  /** Resolves when connected, or after `timeoutMs` (degraded) — start-up never waits longer for Redis. */
  ready(timeoutMs = 2_000): Promise<SharedStateStatus> {
    if (this.state === "connected") return Promise.resolve(this.state);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(on);
        if (this.state !== "connected") this.log.warn(DEGRADED_MESSAGE);
        resolve(this.state);
      };
      const on = (s: SharedStateStatus) => s === "connected" && done();
      const timer = setTimeout(done, timeoutMs);
      this.listeners.add(on);
    });
  }

  private update(): void {
    const next: SharedStateStatus = this.client.status === "ready" && this.subscriber.status === "ready" ? "connected" : "degraded";
    if (next === this.state || this.closed) return;
    this.state = next;
    if (next === "connected") this.log.info("redis connected: rate limits and key invalidations are shared across instances");
    else this.log.warn(DEGRADED_MESSAGE);
    for (const fn of [...this.listeners]) fn(next);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([this.client.quit(), this.subscriber.quit()]);
    this.client.disconnect();
    this.subscriber.disconnect();
  }
}
