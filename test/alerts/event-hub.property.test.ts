/**
 * The event hub's fan-out as a property: random interleavings of watches
 * opened and closed on several projects and events published to them. Every
 * watcher receives exactly the events of its own project published while it
 * watched, in publish order, once each (never another project's, never one
 * from before it subscribed or after it left); closing the hub ends every
 * open watch once and later watches at once. (Across instances, through
 * Redis: event-stream-cluster.test.ts.)
 */
import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AccountEventSchema } from "../../gen/formstate/v1/usage_service_pb.js";
import { EventHub, type EventListener } from "../../src/events/event-hub.js";
import { createLogger } from "../../src/logger.js";

const PROJECTS = ["p1", "p2", "p3"];
const log = createLogger("silent");

type Op = { kind: "watch"; project: string } | { kind: "leave"; which: number } | { kind: "publish"; project: string };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("watch" as const), project: fc.constantFrom(...PROJECTS) }),
  fc.record({ kind: fc.constant("leave" as const), which: fc.nat(20) }),
  fc.record({ kind: fc.constant("publish" as const), project: fc.constantFrom(...PROJECTS) }),
);

interface Watch {
  project: string;
  got: string[];
  closed: number;
  leave: () => void;
  open: boolean;
  /** The oracle: what it must have received. */
  want: string[];
}

describe("EventHub fan-out", () => {
  it("gives each watcher exactly its project's events from its watch to its leave, in order, once", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const hub = new EventHub(log);
        const watches: Watch[] = [];
        let n = 0;
        for (const o of ops) {
          if (o.kind === "watch") {
            const w: Watch = { project: o.project, got: [], closed: 0, open: true, want: [], leave: () => {} };
            const listener: EventListener = { event: (e) => w.got.push(e.id), closed: () => w.closed++ };
            w.leave = hub.subscribe(o.project, listener);
            watches.push(w);
          } else if (o.kind === "leave") {
            const w = watches[o.which % Math.max(watches.length, 1)];
            if (!w) continue;
            w.leave();
            w.leave(); // twice is harmless
            w.open = false;
          } else {
            const id = `evt_${++n}`;
            for (const w of watches) if (w.open && w.project === o.project) w.want.push(id);
            hub.publish(o.project, create(AccountEventSchema, { id, account: `accounts/${o.project}` }));
          }
        }
        for (const w of watches) expect(w.got).toEqual(w.want);
        for (const p of PROJECTS) expect(hub.watching(p)).toBe(watches.filter((w) => w.open && w.project === p).length);
        hub.close();
        for (const w of watches) expect(w.closed).toBe(w.open ? 1 : 0);
        let late = 0;
        hub.subscribe("p1", { event: () => {}, closed: () => late++ });
        expect(late).toBe(1);
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 200) },
    );
  });

  it("keeps delivering to the other watchers when one of them throws", () => {
    const hub = new EventHub(log);
    const got: string[] = [];
    hub.subscribe("p1", { event: () => { throw new Error("boom"); }, closed: () => {} });
    hub.subscribe("p1", { event: (e) => got.push(e.id), closed: () => {} });
    hub.publish("p1", create(AccountEventSchema, { id: "evt_a" }));
    expect(got).toEqual(["evt_a"]);
  });
});
