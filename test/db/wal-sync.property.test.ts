/**
 * WalSync's one promise (src/db/wal-sync.ts): `durable()` resolves only after
 * a sync that started after the call has completed, whatever the interleaving
 * of calls and sync completions (which may finish out of order); syncs are
 * shared, no more run at once than allowed, and after a failed sync every
 * wait fails. The fdatasync system call is
 * replaced by one whose completion the test controls (the file is real).
 */
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WalSync } from "../../src/db/wal-sync.js";

type Op = { kind: "commit" } | { kind: "finish"; pick: number; fail: boolean } | { kind: "tick" };

describe("WalSync", () => {
  it("answers each wait only after a sync started after it, shares syncs, runs at most maxInFlight at once, fails closed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "formstate-walsync-"));
    const fd = openSync(join(dir, "wal"), "w");
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 3 }),
          fc.array(fc.oneof(fc.constant<Op>({ kind: "commit" }), fc.record({ kind: fc.constant("finish" as const), pick: fc.nat(5), fail: fc.integer({ min: 0, max: 9 }).map((n) => n === 0) }), fc.constant<Op>({ kind: "tick" })), { maxLength: 60 }),
          async (maxInFlight, ops) => {
            let clock = 0;
            const running: { started: number; done: (err: NodeJS.ErrnoException | null) => void }[] = [];
            let maxParallel = 0;
            const completedSyncStarts: number[] = [];
            const sync = WalSync.over(fd, {
              fdatasync(_fd, done) {
                const started = clock++;
                running.push({
                  started,
                  done: (err) => {
                    if (!err) completedSyncStarts.push(started);
                    done(err);
                  },
                });
                maxParallel = Math.max(maxParallel, running.length);
              },
              fdatasyncSync() {},
            }, maxInFlight);
            const waits: { at: number; settled?: "ok" | "failed"; atSettle?: number[] }[] = [];
            let failedAt: number | undefined;
            const flush = () => new Promise((r) => setImmediate(r));
            for (const op of ops) {
              if (op.kind === "commit") {
                const w: (typeof waits)[number] = { at: clock++ };
                waits.push(w);
                sync.durable().then(
                  () => ((w.settled = "ok"), (w.atSettle = [...completedSyncStarts])),
                  () => (w.settled = "failed"),
                );
              } else if (op.kind === "finish" && running.length > 0) {
                // Syncs may finish in any order when several run.
                const r = running.splice(op.pick % running.length, 1)[0];
                if (op.fail) failedAt ??= clock;
                r.done(op.fail ? Object.assign(new Error("EIO"), { code: "EIO" }) : null);
              }
              await flush();
            }
            // Drain: finish every sync (successfully) until none is left.
            for (let guard = 0; running.length > 0 && guard < 100; guard++) {
              running.shift()!.done(null);
              await flush();
            }
            expect(maxParallel).toBeLessThanOrEqual(maxInFlight);
            for (const w of waits) {
              expect(w.settled).toBeDefined();
              if (w.settled === "ok") {
                // Some completed sync started after this wait began.
                expect(w.atSettle!.some((s) => s > w.at)).toBe(true);
                // And the wait began before any failure.
                if (failedAt !== undefined) expect(w.at).toBeLessThan(failedAt);
              }
              if (failedAt !== undefined && w.at > failedAt) expect(w.settled).toBe("failed");
            }
          },
        ),
        { numRuns: 300 },
      );
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
