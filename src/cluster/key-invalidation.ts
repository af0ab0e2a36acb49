/**
 * API-key cache invalidation across instances, over Redis pub/sub. A revoke,
 * rotate or update publishes the key ids; every instance drops them from its
 * cache and acknowledges; the publisher waits for the acknowledgements (up to
 * ACK_WAIT_MS) before its call answers, so the very next call to any instance
 * sees the change.
 *
 * Redis unreachable: nothing can be published or heard, so every instance
 * keeps keys cached for DEGRADED_CACHE_MS only (see ApiKeys) and, when Redis
 * is back, drops its whole key cache (it may have missed invalidations).
 * A change that must reach every instance (a key revoked, rotated or updated;
 * a member's role; see `publishRequired`) is refused with UNAVAILABLE
 * (SHARED_STATE_UNAVAILABLE) instead of being acknowledged as done everywhere.
 */
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { withReason } from "../errors.js";
import type { Logger } from "../logger.js";
import type { SharedState } from "./shared-state.js";

const ACK_WAIT_MS = 500;

export interface KeyInvalidation {
  /** Tells every other instance to drop these keys; resolves once they have (or after a bounded wait). */
  publish(keyIds: string[]): Promise<void>;
  /** `drop(ids)` for one batch of ids, `drop(undefined)` for "drop everything". */
  subscribe(drop: (keyIds: string[] | undefined) => void): Promise<void>;
  /**
   * Like `publish`, but throws UNAVAILABLE (SHARED_STATE_UNAVAILABLE) when the
   * message cannot be handed to Redis: the caller must not report the change
   * as effective everywhere. Acknowledgements are still awaited (bounded).
   */
  publishRequired(keyIds: string[]): Promise<void>;
  /** Whether invalidations reach the other instances now. */
  connected(): boolean;
}

/** The error for a change that cannot be announced to the other instances. */
export function sharedStateUnavailable(what: string): ReturnType<typeof withReason> {
  return withReason(
    Code.Unavailable,
    `${what}: the shared state (Redis) that tells other instances is unreachable; retry when it is back (or on another instance)`,
    "SHARED_STATE_UNAVAILABLE",
  );
}

interface Message {
  from: string;
  nonce: string;
  ids: string[];
}

export function redisKeyInvalidation(shared: SharedState, log: Logger): KeyInvalidation {
  return redisInvalidation(shared, log, "keys");
}

/**
 * The same protocol on its own channels for another cache (`topic`): API keys
 * use "keys"; sessions and wallet bindings use "auth".
 */
export function redisInvalidation(shared: SharedState, log: Logger, topic: string): KeyInvalidation {
  const self = randomBytes(8).toString("hex");
  const channel = `${shared.prefix}${topic}:invalidate`;
  const ackChannel = `${shared.prefix}${topic}:ack:${self}`;
  const waiting = new Map<string, { acks: number; needed: number; done: () => void }>();
  let drop: (ids: string[] | undefined) => void = () => {};
  let wasConnected = shared.status() === "connected";

  const subscribe = () =>
    shared.subscriber.subscribe(channel, ackChannel).then(
      () => {},
      (err: unknown) => log.warn({ err }, "could not subscribe to key invalidations; retrying when Redis is back"),
    );
  shared.onChange((s) => {
    if (s === "connected" && !wasConnected) {
      // Back after an outage (or reachable for the first time): listen again, and drop what may have changed meanwhile.
      void subscribe();
      drop(undefined);
    }
    wasConnected = s === "connected";
  });

  shared.subscriber.on("message", (ch: string, raw: string) => {
    if (ch === ackChannel) {
      const w = waiting.get(raw);
      if (w && ++w.acks >= w.needed) w.done();
      return;
    }
    if (ch !== channel) return;
    let msg: Message;
    try {
      msg = JSON.parse(raw) as Message;
    } catch {
      return;
    }
    if (msg.from === self) return;
    drop(msg.ids);
    shared.client.publish(`${shared.prefix}${topic}:ack:${msg.from}`, msg.nonce).catch(() => {});
  });

  return {
    async subscribe(fn) {
      drop = fn;
      if (shared.status() === "connected") await subscribe();
    },
    connected: () => shared.status() === "connected",
    publish: (keyIds) => send(keyIds, false),
    publishRequired: (keyIds) => send(keyIds, true),
  };

  async function send(keyIds: string[], required: boolean): Promise<void> {
    if (!keyIds.length) return;
    if (shared.status() !== "connected") {
      if (required) throw sharedStateUnavailable("the change is recorded here but could not be announced");
      return;
    }
    const nonce = randomBytes(8).toString("hex");
    let release!: () => void;
    const acked = new Promise<void>((resolve) => (release = resolve));
    const timer = setTimeout(release, ACK_WAIT_MS);
    try {
      // Acknowledgements may arrive before PUBLISH answers with how many there will be.
      const entry = { acks: 0, needed: Number.POSITIVE_INFINITY, done: release };
      waiting.set(nonce, entry);
      // Every subscriber of the channel but this instance acknowledges.
      const receivers = await shared.client.publish(channel, JSON.stringify({ from: self, nonce, ids: keyIds } satisfies Message));
      entry.needed = receivers - 1;
      if (entry.acks >= entry.needed) release();
      await acked;
    } catch (err) {
      log.warn({ err, keyIds }, "could not publish a key invalidation: other instances see it when their cache entry expires");
      if (required) throw sharedStateUnavailable("the change is recorded here but could not be announced");
    } finally {
      clearTimeout(timer);
      waiting.delete(nonce);
    }
  }
}
