/**
 * Set-based recording: a run of concurrent usage records (RecordUsage calls
 * and BatchRecordUsage items sharing a group commit, src/db/group-commit.ts)
 * decided in memory in arrival order, then written with a few statements for
 * the whole run instead of ~16 per record.
 *
 * Each item is decided exactly as `Usage.recordUnit` would decide it after
 * the items before it: replay (same request id: the stored or just-accepted
 * record, or INVALID_ARGUMENT for a different request), account, price, the
 * attributed key, funds (this month's plan credits or sandbox top-up counted
 * as the per-unit path grants them: booked before the first accepted debit,
 * never for a refused one), the key's and its parents' spend caps, the debit,
 * the invoicing rule. A refused item writes nothing and gets its own error.
 * The accepted ones are then written as: one multi-row insert each of usage
 * records, ledger entries (numbered after each ledger's last seq, so the seq
 * stays dense and the receipt chain is the per-unit one) and outbox rows; one
 * balance update per ledger (`ledger.bookAll`); one spend update per key; one
 * upsert per rollup row; one insert of publisher earnings.
 *
 * What it does not model goes to the per-unit path (the group commit runs
 * each unit's own function instead when `apply` throws): holds due to expire
 * in a project of the run, and any unexpected error. Items that settle an
 * authorization or spend a wallet budget are never sent here (usage.ts).
 *
 * Deciding in memory is exact because a run's transaction is the only
 * writer of what it reads: on SQLite the one write lock (BEGIN IMMEDIATE), on
 * PostgreSQL the project's advisory lock (a lane of the group commit is one
 * project, and every writer of a project's ledger, keys and holds takes its
 * scope's or the store's lock: postgres.ts). On SQLite each saved statement
 * is a synchronous call; on PostgreSQL a round trip.
 */
import { ConnectError } from "@connectrpc/connect";
import type { Db } from "../db/database.js";
import type { Outcome, SetWriter } from "../db/group-commit.js";
import { prepared, preparedInsert } from "../db/prepared.js";
import { invalidArgument, notFound } from "../errors.js";
import { newSortableId } from "../ids.js";
import type { ApiKeys } from "../keys/api-keys.js";
import * as ledger from "../ledger/ledger.js";
import { type Micros, addMicros, comparableMicros } from "../ledger/micros.js";
import { sandboxTopUp, sandboxTopUpKey } from "../ledger/sandbox.js";
import { invoicedEntry, meterEventRow, stripeCustomerOf } from "../billing/outbox.js";
import { invoicedPart } from "../billing/invoicing.js";
import type { OutboxRow } from "../billing/outbox.js";
import type { Clock } from "../clock.js";
import type { Plan } from "../plans/plans.js";
import { accountName } from "../names/names.js";
import { rollUpRecords } from "./usage-rollups.js";
import type { Caller, PriceBook, RecordInput, RecordResult, RequestNamespace, Usage, UsageDeps, UsageRecordRow } from "./usage.js";
import { debitKey, planCreditsEntry, usageRecordRow } from "./usage.js";

/** One usage to record, as `Usage.recordUnit` prepared it. */
export interface RecordItem {
  caller: Caller;
  projectId: string;
  plan: Plan;
  input: RecordInput;
  now: number;
  env: ledger.Environment;
  namespace: RequestNamespace;
  hash: string;
}

export interface RecordSetDeps {
  usage: Pick<Usage, "price" | "attributedKey" | "creditsExhausted" | "spendCapReached">;
  keys: Pick<ApiKeys, "forMetering" | "spendChain" | "addSpends">;
  prices: PriceBook;
  marketplace?: UsageDeps["marketplace"];
  clock: Clock;
}

/** Holds due to expire: the per-unit path returns them first (not modelled here). */
class HoldsDue extends Error {}

/** One ledger (a project's live or test one) as the run moves it. */
interface LedgerState {
  projectId: string;
  env: ledger.Environment;
  balance: Micros;
  /** Balance moved by the run so far. */
  moved: Micros;
  seq: number | undefined;
  /** This month's plan credits (live) or sandbox top-up (test) not booked yet: the first accepted debit books it first. */
  grantPending: boolean;
  lastTime: number;
}

const CHUNK = 500;

// Prepared (src/db/prepared.ts): the statements of a run of one project and one record, the common case at low load.
/** The account's balances and whether any of its holds is due to expire (one statement). */
const accountQuery = prepared((tx, projectId: string, now: number) =>
  tx
    .selectFrom("account")
    .select(["project_id", "credit_balance_micros", "test_credit_balance_micros"])
    .select((eb) =>
      eb.exists(eb.selectFrom("usage_authorization").select("auth_id").where("project_id", "=", projectId).where("state", "=", "held").where("expire_time", "<=", now)).as("holds_due"),
    )
    .where("project_id", "=", projectId),
);
/** A ledger's last seq and whether the entry `key` (this month's grant) is in it (one statement). */
const ledgerHeadQuery = prepared((tx, projectId: string, env: string, key: string) =>
  tx
    .selectFrom("credit_transaction")
    .select((eb) => [
      eb.fn.max("seq").as("seq"),
      eb
        .exists(eb.selectFrom("credit_transaction as g").select("g.seq").where("g.project_id", "=", projectId).where("g.environment", "=", env).where("g.idempotency_key", "=", key))
        .as("granted"),
    ])
    .where("project_id", "=", projectId)
    .where("environment", "=", env),
);
const replayQuery = prepared((tx, projectId: string, env: string, namespace: string, requestId: string) =>
  tx.selectFrom("usage_record").selectAll().where("project_id", "=", projectId).where("environment", "=", env).where("request_namespace", "=", namespace).where("request_id", "=", requestId),
);
const insertRecords = preparedInsert("usage_record");
const insertOutbox = preparedInsert("meter_outbox");

export class RecordSet implements SetWriter<RecordItem, RecordResult> {
  constructor(private readonly deps: RecordSetDeps) {}

  async apply(tx: Db, items: RecordItem[]): Promise<Outcome<RecordResult>[]> {
    const { usage, keys, clock } = this.deps;
    const t = clock.now();
    const projectIds = [...new Set(items.map((i) => i.projectId))];
    const accounts = new Map<string, { live: Micros; test: Micros }>();
    if (projectIds.length === 1) {
      // The common case (always on PostgreSQL, whose lanes are projects): balances and holds in one statement.
      const [row] = await accountQuery(tx, projectIds[0], t);
      if (row && Number(row.holds_due)) throw new HoldsDue("holds due to expire: the per-unit path returns them");
      if (row) accounts.set(row.project_id, { live: row.credit_balance_micros, test: row.test_credit_balance_micros });
    } else {
      const due = await tx.selectFrom("usage_authorization").select("auth_id").where("project_id", "in", projectIds).where("state", "=", "held").where("expire_time", "<=", t).limit(1).executeTakeFirst();
      if (due) throw new HoldsDue("holds due to expire: the per-unit path returns them");
      for (let i = 0; i < projectIds.length; i += CHUNK) {
        const rows = await tx.selectFrom("account").select(["project_id", "credit_balance_micros", "test_credit_balance_micros"]).where("project_id", "in", projectIds.slice(i, i + CHUNK)).execute();
        for (const r of rows) accounts.set(r.project_id, { live: r.credit_balance_micros, test: r.test_credit_balance_micros });
      }
    }
    const stored = await this.storedRecords(tx, items);

    // Reads the run repeats are made once: prices, keys as metering sees them, spend chains, Stripe customers.
    const memo = new Map<string, Promise<unknown>>();
    const once = <T>(key: string, load: () => Promise<T>): Promise<T> => {
      let p = memo.get(key) as Promise<T> | undefined;
      if (!p) memo.set(key, (p = load()));
      return p;
    };
    const prices: PriceBook = {
      modelPrice: (db, p, m) => once(`mp\0${p}\0${m}`, () => this.deps.prices.modelPrice(db, p, m)),
      modelPriceAt: (db, p, m, at) => once(`mpa\0${p}\0${m}\0${at}`, () => this.deps.prices.modelPriceAt(db, p, m, at)),
      agentPrice: (db, p, a, via) => once(`ap\0${p}\0${a}\0${via}`, () => this.deps.prices.agentPrice(db, p, a, via)),
      agentPriceAt: (db, p, a, at, via) => once(`apa\0${p}\0${a}\0${at}\0${via}`, () => this.deps.prices.agentPriceAt(db, p, a, at, via)),
      hireStatus: (db, p, a) => this.deps.prices.hireStatus(db, p, a),
    };
    const metering: Pick<ApiKeys, "forMetering"> = { forMetering: (db, p, k) => once(`km\0${p}\0${k}`, () => keys.forMetering(db, p, k)) };
    const chains = new Map<string, Awaited<ReturnType<ApiKeys["spendChain"]>>>();
    const spendOf = new Map<string, { keyId: string; keyName: string; cap: number | null; spent: number }>();
    const chainOf = async (keyId: string) => {
      let chain = chains.get(keyId);
      if (!chain) {
        // One state per key, shared across chains: a parent's spend moves with every child's debit.
        chain = (await keys.spendChain(tx, keyId)).map((k) => spendOf.get(k.keyId) ?? (spendOf.set(k.keyId, k), k));
        chains.set(keyId, chain);
      }
      return chain;
    };

    const ledgers = new Map<string, LedgerState>();
    const ledgerOf = async (item: RecordItem, balance: Micros): Promise<LedgerState> => {
      const key = `${item.projectId}\0${item.env}`;
      let l = ledgers.get(key);
      if (!l) {
        const pendingKey = item.env === "test" ? sandboxTopUpKey(t) : item.plan.includedCreditsMicros > 0 ? planCreditsEntry(item.projectId, item.plan, t).idempotencyKey : undefined;
        // An empty key is never booked: "granted" then only says nothing is pending.
        const [head] = await ledgerHeadQuery(tx, item.projectId, item.env, pendingKey ?? "");
        const granted = pendingKey === undefined || Boolean(Number(head?.granted ?? 0));
        l = { projectId: item.projectId, env: item.env, balance, moved: 0, seq: Number(head?.seq ?? 0), grantPending: !granted, lastTime: t };
        ledgers.set(key, l);
      }
      return l;
    };

    const outcomes: Outcome<RecordResult>[] = [];
    const accepted = new Map<string, UsageRecordRow>();
    const records: UsageRecordRow[] = [];
    const entries: ledger.LedgerRow[] = [];
    const outbox: OutboxRow[] = [];
    const spend = new Map<string, number>();
    const book = async (l: LedgerState, entry: ledger.LedgerEntry, now: number): Promise<ledger.LedgerRow> => {
      l.seq ??= await ledger.lastSeq(tx, l.projectId, l.env);
      l.balance = addMicros(l.balance, entry.amountMicros);
      l.moved = addMicros(l.moved, entry.amountMicros);
      l.lastTime = now;
      const row = ledger.entryRow(entry, l.seq, l.balance, now);
      l.seq++;
      entries.push(row);
      return row;
    };

    for (const item of items) {
      const { caller, projectId, plan, input, now, env, namespace } = item;
      const replayKey = `${projectId}\0${env}\0${namespace}\0${input.requestId}`;
      try {
        const prior = accepted.get(replayKey) ?? stored.get(replayKey);
        if (prior) {
          if (prior.request_hash !== item.hash) throw invalidArgument("request_id", "was already used for different usage");
          outcomes.push({ ok: true, value: { record: prior, balance: prior.balance_after_micros } });
          continue;
        }
        const account = accounts.get(projectId);
        if (!account) throw notFound(`account "${accountName(projectId)}"`);
        const priced = await usage.price(tx, caller, projectId, input.usage, input.occurTime, input.invocation, prices);
        const keyId = await usage.attributedKey(tx, caller, projectId, input.apiKey, input.usage, metering);
        const l = await ledgerOf(item, env === "test" ? account.test : account.live);
        // Funds, as requireFunds sees them: after this month's grant (the per-unit path books it, then checks).
        const grant = l.grantPending ? (env === "test" ? sandboxTopUp(projectId, l.balance, plan, t) : planCreditsEntry(projectId, plan, t)) : undefined;
        const available = grant ? addMicros(l.balance, grant.amountMicros) : l.balance;
        if (!plan.overdraftAllowed && available < priced.cost) throw usage.creditsExhausted(plan, comparableMicros(available), priced.cost, projectId, env);
        const chain = keyId ? await chainOf(keyId) : [];
        for (const k of chain) {
          if (k.cap !== null && k.spent + priced.cost > k.cap) throw usage.spendCapReached({ keyName: k.keyName, cap: k.cap, spent: k.spent }, priced.cost);
        }

        // Accepted: from here on nothing refuses it.
        if (grant) {
          await book(l, grant, t);
          l.grantPending = false;
        }
        if (priced.cost !== 0) {
          for (const k of chain) {
            k.spent += priced.cost;
            spend.set(k.keyId, (spend.get(k.keyId) ?? 0) + priced.cost);
          }
        }
        const recordId = newSortableId();
        const debit = await book(
          l,
          { projectId, environment: env, kind: "usage_debit", amountMicros: -priced.cost, idempotencyKey: debitKey(namespace, input.requestId), usageRecordId: recordId, actor: caller.subject, description: priced.subject },
          now,
        );
        const occur = input.occurTime ?? now;
        let balance = debit.balance_after_micros;
        if (env === "live") {
          const value = invoicedPart({ overdraftAllowed: plan.overdraftAllowed, balanceBefore: comparableMicros(balance) + priced.cost, cost: priced.cost });
          if (value > 0) {
            const customer = await once(`sc\0${projectId}`, () => stripeCustomerOf(tx, projectId));
            if (customer) {
              outbox.push(meterEventRow(debit, recordId, customer, value, occur));
              balance = (await book(l, invoicedEntry(projectId, recordId, value), debit.create_time)).balance_after_micros;
            }
          }
        }
        const record = usageRecordRow({ recordId, projectId, namespace, env, hash: item.hash, caller, input, priced, keyId, authorizationId: null, balance, occur, now });
        accepted.set(replayKey, record);
        records.push(record);
        outcomes.push({ ok: true, value: { record, balance } });
      } catch (error) {
        // A refusal is the item's answer; anything else hands the run to the per-unit path (group-commit.ts).
        if (!(error instanceof ConnectError)) throw error;
        outcomes.push({ ok: false, error });
      }
    }

    if (records.length === 0) return outcomes;
    for (let i = 0; i < records.length; i += CHUNK) await insertRecords(tx, records.slice(i, i + CHUNK));
    const deltas: ledger.BalanceDelta[] = [];
    for (const l of ledgers.values()) if (l.seq !== undefined) deltas.push({ projectId: l.projectId, environment: l.env, amountMicros: l.moved, now: l.lastTime });
    await ledger.bookAll(tx, entries, deltas);
    for (let i = 0; i < outbox.length; i += CHUNK) await insertOutbox(tx, outbox.slice(i, i + CHUNK));
    await keys.addSpends(tx, spend);
    await rollUpRecords(tx, records);
    const marketplace = this.deps.marketplace;
    if (marketplace?.bookUsages) await marketplace.bookUsages(tx, records);
    else if (marketplace) for (const r of records) await marketplace.bookUsage(tx, r);
    return outcomes;
  }

  /** Records already stored under the run's request ids, by project, environment, namespace and request id. */
  private async storedRecords(tx: Db, items: RecordItem[]): Promise<Map<string, UsageRecordRow>> {
    const groups = new Map<string, { projectId: string; env: string; namespace: string; ids: Set<string> }>();
    for (const i of items) {
      const key = `${i.projectId}\0${i.env}\0${i.namespace}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { projectId: i.projectId, env: i.env, namespace: i.namespace, ids: new Set() }));
      g.ids.add(i.input.requestId);
    }
    const stored = new Map<string, UsageRecordRow>();
    for (const g of groups.values()) {
      const ids = [...g.ids];
      for (let i = 0; i < ids.length; i += CHUNK) {
        const rows =
          ids.length === 1
            ? await replayQuery(tx, g.projectId, g.env, g.namespace, ids[0])
            : await tx
          .selectFrom("usage_record")
          .selectAll()
          .where("project_id", "=", g.projectId)
          .where("environment", "=", g.env)
          .where("request_namespace", "=", g.namespace)
          .where("request_id", "in", ids.slice(i, i + CHUNK))
          .execute();
        for (const r of rows) stored.set(`${r.project_id}\0${r.environment}\0${r.request_namespace}\0${r.request_id}`, r);
      }
    }
    return stored;
  }
}
