/**
 * gRPC health checking (grpc.health.v1): Check, Watch and List over the
 * serving status of the server ("") and of each service. Shutdown flips
 * everything to NOT_SERVING and ends Watch streams.
 */
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { formstateServices } from "./services.js";

type Listener = (status: Status | "closed") => void;

/** The serving status of the server and its services, observable by Watch. */
export class HealthStatus {
  private readonly statuses = new Map<string, Status>();
  private readonly listeners = new Set<{ service: string; fn: Listener }>();
  private closed = false;

  constructor(services: readonly string[] = formstateServices.map((s) => s.typeName)) {
    for (const s of ["", ...services]) this.statuses.set(s, Status.NOT_SERVING);
  }

  get(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  set(service: string, status: Status): void {
    this.statuses.set(service, status);
    for (const l of this.listeners) if (l.service === service) l.fn(status);
  }

  /** Everything SERVING (true) or NOT_SERVING (false). */
  setAll(serving: boolean): void {
    for (const s of this.statuses.keys()) this.set(s, serving ? Status.SERVING : Status.NOT_SERVING);
  }

  serving(): boolean {
    return this.statuses.get("") === Status.SERVING;
  }

  all(): Map<string, Status> {
    return new Map(this.statuses);
  }

  /** NOT_SERVING everywhere, then ends every Watch stream. */
  shutdown(): void {
    this.setAll(false);
    this.closed = true;
    for (const l of this.listeners) l.fn("closed");
  }

  /** Listener count, for tests that check nothing leaks. */
  watchers(): number {
    return this.listeners.size;
  }

  /** Statuses of one service as they change, starting with the current one, until `signal` aborts. */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<Status> {
    const queue: Array<Status | "closed"> = [this.statuses.get(service) ?? Status.SERVICE_UNKNOWN];
    let wake: (() => void) | undefined;
    const entry = {
      service,
      fn: (s: Status | "closed") => {
        queue.push(s);
        wake?.();
      },
    };
    const onAbort = () => wake?.();
    this.listeners.add(entry);
    signal.addEventListener("abort", onAbort);
    try {
      if (this.closed) queue.push("closed");
      while (!signal.aborted) {
        const next = queue.shift();
        if (next === "closed") return;
        if (next !== undefined) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.listeners.delete(entry);
      signal.removeEventListener("abort", onAbort);
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
      for await (const status of health.watch(req.service, ctx.signal)) yield { status };
    },
  });
}
