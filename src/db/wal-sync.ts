/**
 * Durable SQLite commits without blocking the event loop.
 *
 * `synchronous=FULL` makes every COMMIT fsync the WAL inside better-sqlite3's
 * synchronous call: on this VM ~1 ms per commit during which the whole server
 * (authentication, other calls' parsing, responses) stands still; under load it
 * was the largest single item of RecordUsage's profile. Here the connection runs
 * `synchronous=NORMAL` (a COMMIT only write()s its WAL frames; NORMAL keeps the
 * file consistent through any crash, SQLite's own guarantee) and the WAL is
 * fdatasync'ed on libuv's thread pool after the COMMIT; the transaction's caller
 * is answered only after that sync. fdatasync covers every write made to the file
 * before it starts, so a sync started after a COMMIT returned makes that commit
 * durable through power loss: the same guarantee FULL gives, paid off the main
 * thread, and shared by every commit made while the previous sync ran.
 *
 * What this does not cover is a write outside `Database.transaction` (an
 * autocommit statement): database.ts syncs those on the spot, as FULL would.
 * Readers may see a commit before its sync finishes (as with any group commit);
 * only acknowledgements wait for it.
 *
 * A failed fsync leaves it unknown what reached the disk (and Linux may drop the
 * dirty pages, so a later fsync can succeed without them): from then on every
 * durability wait fails, so no write is acknowledged again until a restart
 * (which replays the WAL from disk, as SQLite does after a crash).
 */
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, openSync } from "node:fs";
import { dirname } from "node:path";

/** The operating system calls used, injectable so the ordering can be tested with controlled timing. */
export interface SyncCalls {
  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void;
  fdatasyncSync(fd: number): void;
}

const osCalls: SyncCalls = { fdatasync, fdatasyncSync };

/** Syncs that may run at once: two overlap well on this VM's disk (1,743 -> 3,276 syncs/s, p50 0.31 -> 0.41 ms). */
const MAX_IN_FLIGHT = 2;

export class WalSync {
  private readonly inFlight = new Set<Promise<void>>();
  /** A sync asked for while all slots were busy: it starts when one frees, and serves everyone who asks meanwhile. */
  private queued: Promise<void> | undefined;
  private readonly slotWaiters: (() => void)[] = [];
  private failed: Error | undefined;
  private syncs = 0;

  /** Told how long each sync took, ms (the server-side histograms: `sqlite/wal_sync`). */
  observe?: (ms: number) => void;

  private constructor(
    private readonly fd: number,
    private readonly calls: SyncCalls,
    private readonly maxInFlight: number,
  ) {}

  /**
   * Opens the WAL of the SQLite file `filename` (it exists once the connection is in WAL mode and has read),
   * and fsyncs its directory once so the WAL file's own entry is durable.
   */
  static open(filename: string, calls: SyncCalls = osCalls): WalSync {
    const fd = openSync(`${filename}-wal`, "r");
    const dir = openSync(dirname(filename), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    return new WalSync(fd, calls, MAX_IN_FLIGHT);
  }

  /** For tests: a WalSync over any open descriptor and the given calls. */
  static over(fd: number, calls: SyncCalls, maxInFlight = MAX_IN_FLIGHT): WalSync {
    return new WalSync(fd, calls, maxInFlight);
  }

  /**
   * Resolves once everything written to the WAL before this call is on disk: a sync that starts now, or (all
   * slots busy with syncs that may have started before the caller's COMMIT) the next one to start, shared by
   * everyone who asks until it starts.
   */
  durable(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.queued) return this.queued;
    if (this.inFlight.size < this.maxInFlight) return this.start();
    const queued = new Promise<void>((resolve) => this.slotWaiters.push(resolve)).then(() => {
      this.queued = undefined;
      return this.start();
    });
    this.queued = queued;
    return queued;
  }

  /** Syncs now, on this thread (a write that committed outside a transaction, where FULL would have). */
  durableNow(): void {
    if (this.failed) throw this.failed;
    try {
      this.calls.fdatasyncSync(this.fd);
      this.syncs++;
    } catch (err) {
      throw this.fail(err);
    }
  }

  /** Syncs completed (for tests and the bench). */
  completed(): number {
    return this.syncs;
  }

  /** Closes the descriptor once the syncs already asked for have finished (their waiters are answered first). */
  async close(): Promise<void> {
    while (this.queued || this.inFlight.size > 0) await Promise.allSettled([this.queued, ...this.inFlight]);
    closeSync(this.fd);
  }

  private start(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    let self!: Promise<void>;
    let ended = false;
    const started = performance.now();
    self = new Promise<void>((resolve, reject) => {
      this.calls.fdatasync(this.fd, (err) => {
        ended = true;
        this.observe?.(performance.now() - started);
        this.inFlight.delete(self);
        // A freed slot starts the queued sync (if any) before this one's waiters run.
        this.slotWaiters.shift()?.();
        if (err) return reject(this.fail(err));
        this.syncs++;
        resolve();
      });
    });
    if (!ended) this.inFlight.add(self);
    return self;
  }

  private fail(err: unknown): Error {
    this.failed ??= new Error(`could not sync the database to disk (${(err as NodeJS.ErrnoException).code ?? String(err)}); writes are refused until a restart`);
    return this.failed;
  }
}
