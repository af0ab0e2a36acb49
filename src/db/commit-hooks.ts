/**
 * What a write transaction changed that in-process caches hold, announced
 * after its COMMIT. Writers call `touch(tx, ...)` inside the transaction for
 * every project whose credit balances or holds they move, every API key row
 * they change and every key whose spend they move; the Database (database.ts, postgres.ts) collects the
 * touches of each transaction and, once it has committed, hands them to its
 * commit listeners (the state cache, src/cluster/state-cache.ts) before the
 * transaction's caller gets its result. A rolled-back transaction announces
 * nothing (it changed nothing); a unit of a group commit rolled back to its
 * savepoint still announces its touches, which only costs a cache reload.
 */
import type { Db } from "./database.js";

/** Projects and API keys a committed transaction changed. */
export interface Changes {
  /** Projects whose account balances (live or test) or usage holds changed. */
  projects: Set<string>;
  /** API keys whose row changed (status, limits, scopes...) other than by spend. */
  keys: Set<string>;
  /** API keys whose spent_micros moved (usage, holds): kept apart so spend does not evict the key authentication reads. */
  spend: Set<string>;
}

/** Called after a COMMIT with what it changed; awaited before the transaction's caller is answered. */
export type CommitListener = (changes: Changes) => void | Promise<void>;

const open = new WeakMap<object, Changes>();

/** Starts collecting the touches of a transaction running on handle `tx` (database.ts, postgres.ts). */
export function trackChanges(tx: Db): Changes {
  const changes: Changes = { projects: new Set(), keys: new Set(), spend: new Set() };
  open.set(tx, changes);
  return changes;
}

/** Stops collecting for `tx` (after COMMIT or ROLLBACK). */
export function untrack(tx: Db): void {
  open.delete(tx);
}

/**
 * Records, inside a write transaction, that it changes these projects'
 * balances or holds and these API key rows. Throws outside one: a write
 * that no cache hears of would break their exactness (state-cache.ts).
 */
export function touch(tx: Db, what: { projects?: Iterable<string>; keys?: Iterable<string>; spend?: Iterable<string> }): void {
  const changes = open.get(tx);
  if (!changes) throw new Error("touch() outside a write transaction: cached balances and keys would not hear of this change");
  if (what.projects) for (const p of what.projects) changes.projects.add(p);
  if (what.keys) for (const k of what.keys) changes.keys.add(k);
  if (what.spend) for (const k of what.spend) changes.spend.add(k);
}

/** Runs the listeners for a committed transaction's changes (nothing when it changed nothing cached). */
export async function announce(listeners: CommitListener[], changes: Changes): Promise<void> {
  if (changes.projects.size === 0 && changes.keys.size === 0 && changes.spend.size === 0) return;
  for (const l of listeners) await l(changes);
}
