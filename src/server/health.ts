/**
 * gRPC health checking (grpc.health.v1): Check, Watch and List over the
 * serving status of the server ("") and of each service. Shutdown flips
 * everything to NOT_SERVING and ends Watch streams.
 */
import { EventEmitter } from "node:events";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { formstateServices } from "./services.js";

/** The serving status of the server ("") and of each service, observable by Watch. */
export class HealthStatus {
  private readonly statuses = new Map<string, Status>();
  // "change" (service, status) on every set(), "close" on shutdown. One
  // listener per open Watch; no cap, so many watchers draw no leak warning.
  private readonly events = new EventEmitter().setMaxListeners(0);
  private closed = false;

  /** Every service starts NOT_SERVING until the server is listening. */
  constructor(services: readonly string[] = formstateServices.map((s) => s.typeName)) {
    for (const s of ["", ...services]) this.statuses.set(s, Status.NOT_SERVING);
  }

  /** The status of a service, undefined if it is unknown. */
  get(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  /** Sets (and so makes known) a service's status; watchers see it. */
  set(service: string, status: Status): void {
    this.statuses.set(service, status);
    this.events.emit("change", service, status);
  }

  /** Everything SERVING (true) or NOT_SERVING (false). */
  setAll(serving: boolean): void {
    for (const s of this.statuses.keys()) this.set(s, serving ? Status.SERVING : Status.NOT_SERVING);
  }

  /** Whether the server as a whole ("") is SERVING. */
  serving(): boolean {
    return this.statuses.get("") === Status.SERVING;
  }

  /** A copy of every known status. */
  all(): Map<string, Status> {
    return new Map(this.statuses);
  }

  /** NOT_SERVING everywhere, then ends every Watch stream (after it sends NOT_SERVING). */
  shutdown(): void {
    this.setAll(false);
    this.closed = true;
    this.events.emit("close");
  }

  /** Open Watch streams, for tests that check nothing leaks. */
  watchers(): number {
    return this.events.listenerCount("change");
  }

  /**
   * A service's status as it changes, starting with the current one
   * (SERVICE_UNKNOWN if unknown), until `signal` aborts or shutdown. Like
   * grpc-go, a slow reader gets the latest status, not every step, and an
   * unchanged status is not sent again.
   */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<Status> {
    let latest = this.statuses.get(service) ?? Status.SERVICE_UNKNOWN;
    let sent: Status | undefined;
    let ended = this.closed;
    let wake: (() => void) | undefined;
    const onChange = (changed: string, status: Status) => {
      if (changed !== service) return;
      latest = status;
      wake?.();
    };
    const onEnd = () => {
      ended = true;
      wake?.();
    };
    this.events.on("change", onChange);
    this.events.on("close", onEnd);
    signal.addEventListener("abort", onEnd);
    try {
      while (!signal.aborted) {
        if (latest !== sent) {
          sent = latest;
          yield latest;
        } else if (ended) {
          return;
        } else {
          // Parked here between changes; onChange/onEnd release it, so an
          // abort ends a waiting stream at once.
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      }
    } finally {
      this.events.off("change", onChange);
      this.events.off("close", onEnd);
      signal.removeEventListener("abort", onEnd);
    }
  }
}

/** Registers grpc.health.v1.Health over the status. */
export function registerHealth(router: ConnectRouter, health: HealthStatus): void {
  router.service(Health, {
    check(req) {
      const status = health.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      return { status };
    },
    list() {
      return { statuses: Object.fromEntries([...health.all()].map(([name, status]) => [name, { status }])) };
    },
    async *watch(req, ctx) {
      // Ends with the call: client cancel, deadline or server close abort ctx.signal.
      for await (const status of health.watch(req.service, ctx.signal)) yield { status };
    },
  });
}
