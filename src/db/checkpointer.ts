/**
 * WAL checkpoints off the main thread.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past
 * 1,000 pages: it copies those pages into the database file and fsyncs both
 * files, 10–16 ms on this VM during which the server answers nothing (the p99
 * of RecordUsage was this). Here a worker thread with its own connection to
 * the file runs `PRAGMA wal_checkpoint(PASSIVE)` every `intervalMs`; a passive
 * checkpoint never blocks the writer (it copies what is already committed while
 * new commits append to the WAL), and SQLite restarts the WAL from its start
 * once everything in it has been copied. The main connection keeps an automatic
 * checkpoint only as a backstop (`BACKSTOP_PAGES`), should the worker stop or
 * fall far behind.
 *
 * The worker is plain CommonJS evaluated from a string (no separate file for
 * the build to ship) and loads the same better-sqlite3 the server uses.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { Logger } from "../logger.js";

/** The main connection's own automatic checkpoint threshold while the worker runs (~40 MB of WAL). */
export const BACKSTOP_PAGES = 10_000;

const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.filename, { fileMustExist: true });
// NORMAL: a checkpoint syncs the WAL before copying and the database file after (SQLite's own rule).
db.pragma("synchronous = NORMAL");
db.pragma("busy_timeout = 0");
const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
let runs = 0;
const timer = setInterval(() => {
  try {
    checkpoint.get();
    runs++;
    parentPort.postMessage({ kind: "ran", runs });
  } catch (err) {
    // SQLITE_BUSY: another checkpoint (another process) is running; the next tick tries again.
    if (!/busy|locked/i.test(String(err && err.message))) parentPort.postMessage({ kind: "error", message: String(err && err.message) });
  }
}, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m !== "stop") return;
  clearInterval(timer);
  db.close();
  parentPort.postMessage({ kind: "stopped" });
  parentPort.close();
});
`;

export interface Checkpointer {
  /** Checkpoint runs so far (for tests). */
  runs(): number;
  stop(): Promise<void>;
}

/** Starts the checkpoint worker on the SQLite file `filename` (already in WAL mode). */
export function startCheckpointer(filename: string, opts: { intervalMs?: number; log?: Logger } = {}): Checkpointer {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(WORKER, { eval: true, workerData: { driver, filename, intervalMs: opts.intervalMs ?? 100 } });
  // Never what keeps the process alive; `stop` ends it properly.
  worker.unref();
  let runs = 0;
  let stopped: (() => void) | undefined;
  worker.on("message", (m: { kind: string; runs?: number; message?: string }) => {
    if (m.kind === "ran") runs = m.runs!;
    else if (m.kind === "error") opts.log?.warn({ err: m.message }, "background WAL checkpoint failed; the automatic one remains");
    else if (m.kind === "stopped") stopped?.();
  });
  worker.on("error", (err) => opts.log?.warn({ err }, "the WAL checkpoint worker stopped; the automatic checkpoint remains"));
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  return {
    runs: () => runs,
    async stop() {
      const done = new Promise<void>((resolve) => (stopped = resolve));
      // Held until it answers: unreferenced, the process could end mid-shutdown waiting for it.
      worker.ref();
      worker.postMessage("stop");
      // A worker that died already never answers: its exit is enough.
      await Promise.race([done.then(() => exited), exited]);
    },
  };
}
