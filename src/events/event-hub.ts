/**
 * Account events (a spend alert fired, credits added) fanned out to the
 * streams watching the account (UsageService.WatchAccountEvents), on this
 * instance and, through Redis pub/sub (REDIS_URL), on every other one: the
 * instance that raises an event is rarely the one a console is connected to.
 *
 * Delivery is live and best effort: an event raised while Redis is
 * unreachable reaches this instance's watchers only, and nothing is replayed
 * (the durable record of an alert is its webhook delivery). Without Redis
 * (one instance, SQLite development) the hub is purely in-process.
 */
import { randomBytes } from "node:crypto";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type AccountEvent, AccountEventSchema } from "../../gen/formstate/v1/usage_service_pb.js";
import type { SharedState } from "../cluster/shared-state.js";
import type { Logger } from "../logger.js";

/** A watcher: told every event of the account it watches, and when the hub closes (the server stops). */
export interface EventListener {
  event(event: AccountEvent): void;
  closed(): void;
}

/** A published event on the wire between instances: who sent it, and the event's protobuf bytes. */
interface Envelope {
  from: string;
  project: string;
  event: string;
}

export class EventHub {
  private readonly self = randomBytes(8).toString("hex");
  private readonly watchers = new Map<string, Set<EventListener>>();
  private readonly channel?: string;
  private isClosed = false;

  constructor(
    private readonly log: Logger,
    private readonly shared?: SharedState,
  ) {
    if (!shared) return;
    const channel = `${shared.prefix}events`;
    this.channel = channel;
    const listen = () => shared.subscriber.subscribe(channel).then(
      () => {},
      (err: unknown) => log.warn({ err }, "could not subscribe to account events; retrying when Redis is back"),
    );
    let wasConnected = shared.status() === "connected";
    shared.onChange((s) => {
      if (s === "connected" && !wasConnected) void listen();
      wasConnected = s === "connected";
    });
    shared.subscriber.on("message", (ch: string, raw: string) => {
      if (ch === channel) this.received(raw);
    });
    if (wasConnected) void listen();
  }

  /** Watches a project's events until the returned function is called. */
  subscribe(projectId: string, listener: EventListener): () => void {
    if (this.isClosed) {
      listener.closed();
      return () => {};
    }
    let set = this.watchers.get(projectId);
    if (!set) this.watchers.set(projectId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.watchers.get(projectId) === set) this.watchers.delete(projectId);
    };
  }

  /** How many streams watch a project here (for tests and metrics). */
  watching(projectId: string): number {
    return this.watchers.get(projectId)?.size ?? 0;
  }

  /** Delivers an event of `projectId` to its watchers here and on every other instance. Never throws. */
  publish(projectId: string, event: AccountEvent): void {
    this.deliver(projectId, event);
    const { shared, channel } = this;
    if (!shared || !channel || shared.status() !== "connected") return;
    const envelope: Envelope = { from: this.self, project: projectId, event: Buffer.from(toBinary(AccountEventSchema, event)).toString("base64") };
    shared.client.publish(channel, JSON.stringify(envelope)).catch((err: unknown) => this.log.warn({ err, event: event.id }, "could not publish an account event to the other instances"));
  }

  /** Ends every watch (server shutdown: streams would otherwise hold the drain until its grace runs out). */
  close(): void {
    this.isClosed = true;
    const all = [...this.watchers.values()].flatMap((set) => [...set]);
    this.watchers.clear();
    for (const listener of all) listener.closed();
  }

  private received(raw: string): void {
    let envelope: Envelope;
    let event: AccountEvent;
    try {
      envelope = JSON.parse(raw) as Envelope;
      if (envelope.from === this.self) return;
      event = fromBinary(AccountEventSchema, Buffer.from(envelope.event, "base64"));
    } catch (err) {
      this.log.warn({ err }, "ignored an account event that does not decode");
      return;
    }
    this.deliver(envelope.project, event);
  }

  private deliver(projectId: string, event: AccountEvent): void {
    for (const listener of [...(this.watchers.get(projectId) ?? [])]) {
      try {
        listener.event(event);
      } catch (err) {
        this.log.warn({ err }, "an account event watcher failed");
      }
    }
  }
}
