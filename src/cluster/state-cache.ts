/**
 * Exact in-process caches of what every call reads: API key rows (ApiKeys)
 * and a project's credit balances and holds (Accounts). They let
 * authentication, VerifyApiKey and the balance it reports answer without a
 * database read, and stay exact, not merely fresh within a TTL:
 *
 * 1. This process's writers: every write transaction that changes a balance,
 *    a hold or a key row says so with `touch(tx, ...)` (src/db/commit-hooks.ts:
 *    ledger.book, the key repository, key spend, account creation); after its
 *    COMMIT, and before its caller is answered, the Database hands the
 *    touched ids here and the entries are dropped.
 * 2. Other processes on the same SQLite file: before an entry is served,
 *    `PRAGMA data_version` (one prepared statement, no table read) is compared
 *    with the value seen last; any other connection's commit changes it, and
 *    then every entry is dropped.
 * 3. Other instances on PostgreSQL: each commit's touched ids are published on
 *    the Redis channel `<prefix>state:invalidate` and the writer waits (bounded)
 *    until every other instance has dropped them, like key revocations
 *    (key-invalidation.ts). Without Redis, or while it is unreachable, nothing
 *    from other instances can be heard: balances are then not cached at all on
 *    PostgreSQL (a read per call, as before), and key rows only for the short
 *    TTLs of ApiKeys (30 s without Redis, 2 s while it is unreachable).
 *
 * Why an entry is never older than the last commit answered to anyone: a
 * value is cached only when no drop happened between the moment its load
 * began and the moment it is stored (a generation counter bumped by every
 * drop). A commit that lands after a load read the old value is therefore
 * either (a) announced before the store: the generation moved, the value is
 * returned to that one caller but not kept; or (b) announced after the store:
 * its drop removes the entry. The writer's caller is answered only after the
 * announcement, so once any client has seen a write succeed, no cache
 * anywhere still holds the value from before it. TTLs remain as a bound only
 * (writes that bypass `touch`, such as a hand edit through the same SQLite
 * connection).
 *
 * Another process's commits are announced by nothing: they are found by the
 * data_version check before an entry is served, under one rule: a request is
 * served only after a check that ran after the request arrived (its bytes
 * were read). Any commit acknowledged before the request arrived is then
 * seen: the check drops every entry, and loads after it read the new rows.
 * So the data_version need not be checked after a load too (a commit
 * landing after the check is not one the caller can have seen acknowledged;
 * it is found by the check of the next request that arrives after it), and
 * one check serves every request that had arrived before it ran: the
 * caller's key, the verified key and the balance of one VerifyApiKey call,
 * and the other calls in flight. A request says when it arrived with an
 * `arrival()` stamp taken when it was read (src/server/client-ip.ts); a read
 * without a stamp (direct calls, a stream's later recheck of its credential)
 * always checks.
 */
import type { Database } from "../db/database.js";
import type { Logger } from "../logger.js";
import type { KeyInvalidation } from "./key-invalidation.js";

/** What a cache must drop: these projects', keys' and key spends' entries, or (undefined) everything. */
export type Dropped = { projects: string[]; keys: string[]; spend: string[] } | undefined;

let arrivals = 0;

/**
 * A request's arrival stamp, taken once its bytes are read: a check that ran
 * after it (a later stamp value) may serve the request (see the top of this
 * file). Increasing, process-wide.
 */
export function arrival(): number {
  return ++arrivals;
}

const PROJECT = "p:";
const KEY = "k:";
const SPEND = "s:";

/** Ties the caches to commits here, to other processes (SQLite) and to other instances (Redis). */
export class Coherence {
  private readonly listeners: ((d: Dropped) => void)[] = [];
  private version: number | undefined;
  /** `arrivals` when data_version was last read: every request stamped up to it arrived before that check. */
  private checkedAt = -1;

  constructor(
    private readonly database: Database,
    private readonly log: Logger,
    /** The "state" channel shared with other instances (several instances sharing a Redis). */
    private readonly invalidation?: KeyInvalidation,
  ) {
    this.version = database.dataVersion?.();
    database.onCommit((c) => this.afterCommit({ projects: [...c.projects], keys: [...c.keys], spend: [...c.spend] }));
    void invalidation?.subscribe((ids) => {
      if (ids === undefined) return this.emit(undefined);
      const d = { projects: [] as string[], keys: [] as string[], spend: [] as string[] };
      for (const id of ids) {
        if (id.startsWith(PROJECT)) d.projects.push(id.slice(PROJECT.length));
        else if (id.startsWith(KEY)) d.keys.push(id.slice(KEY.length));
        else if (id.startsWith(SPEND)) d.spend.push(id.slice(SPEND.length));
      }
      this.emit(d);
    });
  }

  /** Registers a cache's drop function. */
  register(drop: (d: Dropped) => void): void {
    this.listeners.push(drop);
  }

  /**
   * Before serving from a cache: drops every entry if another connection
   * committed to the SQLite file since the last look. Free on PostgreSQL
   * (other instances are heard through Redis). `since`, a request's
   * `arrival()` stamp: nothing to do if a check already ran after the request
   * arrived (see the top of this file); without it, always a fresh look.
   */
  check(since?: number): void {
    const dv = this.database.dataVersion;
    if (!dv) return;
    if (since !== undefined && since <= this.checkedAt) return;
    const at = arrivals;
    const v = dv();
    if (v !== this.version) {
      this.version = v;
      this.emit(undefined);
    }
    // Only a look that succeeded (and whose drop is done) serves the requests that arrived before it.
    this.checkedAt = at;
  }

  /**
   * Whether every change anywhere reaches this process before it is
   * acknowledged: always on SQLite (one file: commit hooks + data_version);
   * on PostgreSQL only while the Redis channel is connected.
   */
  exact(): boolean {
    if (this.database.dataVersion) return true;
    return this.invalidation?.connected() ?? false;
  }

  /**
   * Drops what a commit changed, here and on every other instance (PostgreSQL),
   * waiting (bounded) for their acknowledgement. The Database calls it after
   * each COMMIT with the transaction's touches; a writer that commits some
   * other way calls it itself.
   */
  async afterCommit(changed: NonNullable<Dropped>): Promise<void> {
    const { projects, keys, spend } = changed;
    if (projects.length === 0 && keys.length === 0 && spend.length === 0) return;
    this.emit(changed);
    // Other processes on a SQLite file see the commit through data_version; no message needed.
    if (this.database.dataVersion || !this.invalidation?.connected()) return;
    const ids = [...projects.map((p) => PROJECT + p), ...keys.map((k) => KEY + k), ...spend.map((k) => SPEND + k)];
    await this.invalidation.publish(ids).catch((err: unknown) => {
      this.log.warn({ err }, "could not announce cached state changes to other instances");
    });
  }

  private emit(d: Dropped): void {
    for (const l of this.listeners) l(d);
  }
}

/**
 * One exact cache (see the top of this file): entries by id, each kept at
 * most `ttl()` ms (0 = do not cache now), dropped by `drop`, loaded through
 * `get` so a load that raced a drop is not kept.
 */
export class ExactCache<V> {
  private readonly entries = new Map<string, { value: V; at: number }>();
  private generation = 0;

  constructor(
    private readonly coherence: Coherence,
    private readonly ttl: () => number,
    private readonly max = 50_000,
  ) {}

  /**
   * The cached value, or `load(id)`'s (kept unless a drop raced it); `undefined` is never cached.
   * (`load` takes the id so that callers pass one function made once, not a closure per call.)
   * `since`: the arrival stamp of the request it serves (`Coherence.check`); unset, a fresh check.
   */
  async get(id: string, now: number, load: (id: string) => Promise<V | undefined>, since?: number): Promise<V | undefined> {
    this.coherence.check(since);
    const ttl = this.ttl();
    const hit = this.entries.get(id);
    if (hit && now - hit.at < ttl) return hit.value;
    const generation = this.generation;
    // No data_version check after the load: a commit it raced is found by the next request's check (top of file).
    const value = await load(id);
    if (value !== undefined && ttl > 0 && generation === this.generation) {
      this.entries.delete(id);
      this.entries.set(id, { value, at: now });
      if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    }
    return value;
  }

  /** Drops entries (all of them for `undefined`); a load in flight is then not kept. */
  drop(ids: Iterable<string> | undefined): void {
    this.generation++;
    if (ids === undefined) this.entries.clear();
    else for (const id of ids) this.entries.delete(id);
  }

  /** Entries held (for tests). */
  size(): number {
    return this.entries.size;
  }
}
