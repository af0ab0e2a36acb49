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

export class WalSync {
  private running: Promise<void> | undefined;
  private runs = 0;
  private next: Promise<void> | undefined;
  private failed: Error | undefined;
  private syncs = 0;

  private constructor(
    private readonly fd: number,
    private readonly calls: SyncCalls,
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
    return new WalSync(fd, calls);
  }

  /** For tests: a WalSync over any open descriptor and the given calls. */
  static over(fd: number, calls: SyncCalls): WalSync {
    return new WalSync(fd, calls);
  }

  /**
   * Resolves once everything written to the WAL before this call is on disk: a sync that starts now (none is
   * running) or right after the running one ends (which may have started before the caller's COMMIT). Every
   * caller waiting meanwhile shares that next sync.
   */
  durable(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    // A queued sync has not started yet: it starts after this call, so it covers this caller too.
    if (this.next) return this.next;
    if (!this.running) return this.start();
    this.next = this.running.then(
      () => {
        this.next = undefined;
        return this.start();
      },
      (err: unknown) => {
        this.next = undefined;
        throw err;
      },
    );
    return this.next;
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
    for (let p = this.next ?? this.running; p; p = this.next ?? this.running) await p.catch(() => {});
    closeSync(this.fd);
  }

  private start(): Promise<void> {
    const run = ++this.runs;
    let ended = false;
    const p = new Promise<void>((resolve, reject) => {
      this.calls.fdatasync(this.fd, (err) => {
        ended = true;
        if (this.runs === run) this.running = undefined;
        if (err) return reject(this.fail(err));
        this.syncs++;
        resolve();
      });
    });
    if (!ended) this.running = p;
    return p;
  }

  private fail(err: unknown): Error {
    this.failed ??= new Error(`could not sync the database to disk (${(err as NodeJS.ErrnoException).code ?? String(err)}); writes are refused until a restart`);
    return this.failed;
  }
}
