/**
 * UsageService.WatchAccountEvents: a server stream of an account's events.
 * It watches the hub first and then sends a heartbeat, so a client that has
 * the first message knows later events reach it. Then, for every event and
 * every `heartbeatMs` of quiet, the caller's credential and role are checked
 * again (recheckCaller) before anything more is sent: a revoked key or
 * session ends the stream with UNAUTHENTICATED, a lost role with
 * PERMISSION_DENIED. A client that cancels ends it at once (the call's
 * abort signal); a client too slow to take MAX_QUEUED events is cut off with
 * RESOURCE_EXHAUSTED rather than buffered without bound, and an account
 * holds at most MAX_WATCHERS streams on one server. Each event says whether
 * it is live money (`livemode`): users see both, an API key only its own
 * environment's, so a test key never sees live money and a live key no
 * sandbox events (docs/test-mode.md).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { type AccountEvent, type UsageService, type WatchAccountEventsResponse, WatchAccountEventsResponseSchema } from "../../gen/formstate/v1/usage_service_pb.js";
import { recheckCaller } from "../auth/authenticate.js";
import { callerOf } from "../auth/principal.js";
import { projectOf } from "../auth/tenancy.js";
import type { Clock } from "../clock.js";
import { notFound, withReason } from "../errors.js";
import { accountName } from "../names/names.js";
import { callerEnvironment } from "../ledger/sandbox.js";
import type { EventHub, EventListener } from "./event-hub.js";

/** Events a stream holds for a client that does not read them. */
export const MAX_QUEUED = 1_000;
/** Streams one account may hold open on one instance (each holds a little memory and a connection). */
export const MAX_WATCHERS = 100;

export type EventMethods = Pick<ServiceImpl<typeof UsageService>, "watchAccountEvents">;

export interface EventStreamDeps {
  hub: EventHub;
  clock: Clock;
  /** Quiet time before a heartbeat, ms. */
  heartbeatMs: number;
  /** Whether the project has an account: a stream of one that does not is NOT_FOUND, as every other method says. */
  accountExists(projectId: string): Promise<boolean>;
}

export function eventMethods(deps: EventStreamDeps): EventMethods {
  return {
    async *watchAccountEvents(_req, ctx) {
      const project = projectOf(ctx);
      if (!(await deps.accountExists(project))) throw notFound(`account "${accountName(project)}"`);
      if (deps.hub.watching(project) >= MAX_WATCHERS) throw withReason(Code.ResourceExhausted, `an account watches its events on at most ${MAX_WATCHERS} streams per server; close one first`, "EVENT_STREAM_LIMIT");
      const caller = callerOf(ctx);
      // Users see both ledgers' events; a key only its own environment's (a test key never live money).
      const live = callerEnvironment(caller) === "live";
      const queue = new EventQueue(ctx.signal, caller.kind === "api_key" ? (e) => e.livemode === live : () => true);
      const unsubscribe = deps.hub.subscribe(project, queue);
      try {
        yield heartbeat(deps.clock);
        for (;;) {
          const event = await queue.next(deps.heartbeatMs);
          if (ctx.signal.aborted) return;
          await recheckCaller(ctx);
          yield event ? create(WatchAccountEventsResponseSchema, { kind: { case: "event", value: event } }) : heartbeat(deps.clock);
        }
      } finally {
        unsubscribe();
      }
    },
  };
}

function heartbeat(clock: Clock): WatchAccountEventsResponse {
  return create(WatchAccountEventsResponseSchema, { kind: { case: "heartbeat", value: { sendTime: timestampFromMs(clock.now()) } } });
}

/** Events waiting to be sent; `next` waits for one, the timeout, or the call's end. */
class EventQueue implements EventListener {
  private readonly items: AccountEvent[] = [];
  private overflowed = false;
  private ended = false;
  private wake?: () => void;

  /** `visible`: whether the caller may see an event (its money's environment). */
  constructor(
    private readonly signal: AbortSignal,
    private readonly visible: (event: AccountEvent) => boolean,
  ) {
    signal.addEventListener("abort", () => this.wake?.(), { once: true });
  }

  closed(): void {
    this.ended = true;
    this.wake?.();
  }

  event(event: AccountEvent): void {
    if (!this.visible(event)) return;
    if (this.items.length >= MAX_QUEUED) this.overflowed = true;
    else this.items.push(event);
    this.wake?.();
  }

  /** The next event, or undefined after `timeoutMs` without one (or once the call has ended). */
  async next(timeoutMs: number): Promise<AccountEvent | undefined> {
    this.failIfOver();
    if (this.items.length === 0 && !this.signal.aborted && !this.ended) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    this.failIfOver();
    return this.items.shift();
  }

  private failIfOver(): void {
    if (this.overflowed) throw withReason(Code.ResourceExhausted, `the client fell more than ${MAX_QUEUED} events behind; watch again`, "EVENT_STREAM_OVERFLOW");
    if (this.ended) throw withReason(Code.Unavailable, "the server is shutting down; watch again (on another instance)", "SHUTTING_DOWN");
  }
}
