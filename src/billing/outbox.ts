/**
 * Metered usage to Stripe through an outbox. A usage debit writes its outbox
 * row in the debit's own transaction (for accounts with a Stripe customer),
 * for the part the invoicing rule (invoicing.ts) says Stripe invoices, so a
 * report exists exactly when the debit does and carries exactly that. A background sender claims
 * due rows under a lease, reports each with `billing.meterEvents.create` and
 * a stable identifier (also the request's idempotency key), so a retry, a
 * crash after Stripe accepted, or a second sender is billed once.
 *
 * Failures: a report Stripe may accept later (no answer, timeout, 5xx, 429)
 * is retried with exponential backoff, and the whole sender pauses while
 * Stripe is failing; a report Stripe refuses as it is, or one older than
 * Stripe's 35 days, becomes `failed` with its reason and an error log line,
 * never dropped silently. `stop()` stops claiming, waits briefly for reports
 * in flight and hands back what it still holds.
 */
import type { Selectable } from "kysely";
import type { Db } from "../db/database.js";
import { prepared } from "../db/prepared.js";
import { newId } from "../ids.js";
import * as ledger from "../ledger/ledger.js";
import type { LedgerRow } from "../ledger/ledger.js";
import { type Micros, comparableMicros } from "../ledger/micros.js";
import { DAY_MS } from "../usage/period.js";
import type { MeterOutboxTable } from "./billing-tables.js";
import { invoicedPart } from "./invoicing.js";
import { describe, isRetryable } from "./stripe-client.js";
import type { StripeContext } from "./stripe-context.js";

export type OutboxRow = Selectable<MeterOutboxTable>;

/** Stripe accepts meter events up to 35 days old; a margin covers the trip there. */
export const MAX_EVENT_AGE_MS = 35 * DAY_MS - 10 * 60_000;
/** Sent rows are kept this long (Stripe's identifier de-duplication is shorter), then pruned. */
const KEEP_SENT_MS = 40 * DAY_MS;
/** Processed webhook event ids are kept past Stripe's 30 days of redelivery, then pruned. */
const KEEP_EVENTS_MS = 35 * DAY_MS;
const BATCH = 100;
const CONCURRENCY = 8;
const PRUNE_EVERY_MS = 3_600_000;

/** The meter event identifier of a usage record: the same on every retry. */
export const meterIdentifier = (usageRecordId: string) => `fs-usage-${usageRecordId}`;

/**
 * Applies the invoicing rule (invoicing.ts) to a usage debit inside its
 * transaction: the invoiced part, if any, gets its outbox row and is moved
 * off the balance by an `invoiced` ledger entry. Accounts without a Stripe
 * customer are not reported (there is no one to bill). Returns the balance
 * after both entries.
 */
export async function invoiceUsage(tx: Db, debit: LedgerRow, plan: { overdraftAllowed: boolean }, occurTime: number): Promise<Micros> {
  const balanceAfter = debit.balance_after_micros;
  // Test mode (docs/test-mode.md): sandbox usage is never reported to Stripe, whatever the plan.
  if (debit.environment !== "live") return balanceAfter;
  const cost = -Number(debit.amount_micros);
  // The rule only compares the balance with the cost, so a balance past 2^53 may be clamped for it.
  const value = invoicedPart({ overdraftAllowed: plan.overdraftAllowed, balanceBefore: comparableMicros(balanceAfter) + cost, cost });
  if (value <= 0 || !debit.usage_record_id) return balanceAfter;
  if (!(await enqueueMeterEvent(tx, debit, debit.usage_record_id, value, occurTime))) return balanceAfter;
  const { row } = await ledger.book(tx, invoicedEntry(debit.project_id, debit.usage_record_id, value), debit.create_time);
  return row.balance_after_micros;
}

/** Writes the outbox row reporting `value` of a usage debit; false when the account has no Stripe customer. */
async function enqueueMeterEvent(tx: Db, debit: LedgerRow, usageRecordId: string, value: number, occurTime: number): Promise<boolean> {
  const customer = await stripeCustomerOf(tx, debit.project_id);
  if (!customer) return false;
  await tx.insertInto("meter_outbox").values(meterEventRow(debit, usageRecordId, customer, value, occurTime)).execute();
  return true;
}

/** The project's Stripe customer, if it has one (usage is reported only then). */
export async function stripeCustomerOf(tx: Db, projectId: string): Promise<string | undefined> {
  return (await customerQuery(tx, projectId))[0]?.stripe_customer_id;
}

const customerQuery = prepared((tx, projectId: string) => tx.selectFrom("billing_customer").select("stripe_customer_id").where("project_id", "=", projectId));

/** The outbox row reporting `value` of a usage debit to `customer`. */
export function meterEventRow(debit: { project_id: string; create_time: number }, usageRecordId: string, customer: string, value: number, occurTime: number): OutboxRow {
  return {
    identifier: meterIdentifier(usageRecordId),
    project_id: debit.project_id,
    stripe_customer_id: customer,
    value_micros: value,
    event_time: occurTime,
    status: "pending",
    attempts: 0,
    next_attempt_time: debit.create_time,
    lease_owner: null,
    lease_until: null,
    last_error: null,
    create_time: debit.create_time,
    sent_time: null,
  };
}

/** The ledger entry moving an invoiced part off the balance (it is owed on the Stripe invoice now). */
export function invoicedEntry(projectId: string, usageRecordId: string, value: number): ledger.LedgerEntry {
  return { projectId, kind: "invoiced", amountMicros: value, idempotencyKey: `invoiced:${usageRecordId}`, usageRecordId, description: "usage overage billed on the Stripe invoice" };
}

/** The delay before retry number `attempt` (1, 2, ...): base doubling up to max, times 0.8-1.2 (`random` 0.5 = exactly). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exact = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exact * (0.8 + 0.4 * random()));
}

type SendResult = "sent" | "retry" | "failed";

export class MeterSender {
  /** This sender's name on the rows it holds. */
  readonly owner = `meter-${newId(10)}`;
  private timer?: NodeJS.Timeout;
  /** Passes under way (the timer's, or a caller's). */
  private readonly passes = new Set<Promise<number>>();
  private stopping = false;
  /** Consecutive retryable failures, for the sender-wide pause. */
  private failures = 0;
  private pausedUntil = 0;
  private lastPrune = 0;

  constructor(private readonly ctx: StripeContext) {}

  /** A row is held this long while it is being sent: longer than one request can take. */
  private get leaseMs(): number {
    return 2 * this.ctx.settings.timeoutMs + 10_000;
  }

  start(): void {
    if (this.timer || this.stopping) return;
    const tick = () => {
      void this.pass()
        .catch((err: unknown) => {
          if (!this.stopping) this.ctx.log.warn({ reason: describe(err) }, "meter sender pass failed");
        })
        .then(() => {
          if (!this.stopping) this.timer = setTimeout(tick, this.ctx.settings.meterIntervalMs).unref();
        });
    };
    this.timer = setTimeout(tick, this.ctx.settings.meterIntervalMs).unref();
  }

  /** Stops claiming; waits for reports in flight (at most one request timeout) and releases what it holds. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.passes.size) {
      let timeout: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(this.passes), new Promise((r) => (timeout = setTimeout(r, this.ctx.settings.timeoutMs + 1_000)))]);
      clearTimeout(timeout);
    }
    await this.release();
  }

  /** One pass: claims due rows and reports them. Returns how many were sent. */
  async pass(): Promise<number> {
    const run = this.runPass();
    this.passes.add(run);
    try {
      return await run;
    } finally {
      this.passes.delete(run);
    }
  }

  private async runPass(): Promise<number> {
    const now = this.ctx.clock.now();
    if (now - this.lastPrune >= PRUNE_EVERY_MS) await this.prune(now);
    if (now < this.pausedUntil) return 0;
    const rows = await this.claim(now);
    let sent = 0;
    let halted = false;
    const queue = [...rows];
    const worker = async () => {
      while (!halted && !this.stopping && queue.length) {
        const result = await this.send(queue.shift()!);
        if (result === "sent") sent++;
        if (result === "retry") halted = true;
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, rows.length) }, worker));
    if (queue.length && !this.stopping) await this.release(queue.map((r) => r.identifier));
    return sent;
  }

  /** Counts by status, and the oldest pending report's age (for operators and tests). */
  async stats(): Promise<{ pending: number; sent: number; failed: number; oldestPendingMs: number }> {
    const db = this.ctx.database.db;
    const rows = await db
      .selectFrom("meter_outbox")
      .select((eb) => ["status", eb.fn.countAll<number>().as("n"), eb.fn.min<number>("event_time").as("oldest")])
      .groupBy("status")
      .execute();
    const by = new Map(rows.map((r) => [r.status, r]));
    const oldest = by.get("pending")?.oldest;
    return {
      pending: Number(by.get("pending")?.n ?? 0),
      sent: Number(by.get("sent")?.n ?? 0),
      failed: Number(by.get("failed")?.n ?? 0),
      oldestPendingMs: oldest === undefined ? 0 : this.ctx.clock.now() - Number(oldest),
    };
  }

  /**
   * Leases due rows to this sender. Senders in several instances never hold
   * the same row: on SQLite the write transaction serialises claims; on
   * PostgreSQL claims run in parallel, each locking its rows and skipping rows
   * another claim has locked (`FOR UPDATE SKIP LOCKED`), then leasing them.
   */
  private claim(now: number): Promise<OutboxRow[]> {
    const { database } = this.ctx;
    return database.transaction(async (tx) => {
      let q = tx
        .selectFrom("meter_outbox")
        .selectAll()
        .where("status", "=", "pending")
        .where("next_attempt_time", "<=", now)
        .where((eb) => eb.or([eb("lease_until", "is", null), eb("lease_until", "<=", now)]))
        .orderBy("next_attempt_time")
        .orderBy("create_time")
        .limit(BATCH);
      if (database.dialect === "postgres") q = q.forUpdate().skipLocked();
      const due = await q.execute();
      if (due.length) {
        await tx
          .updateTable("meter_outbox")
          .set({ lease_owner: this.owner, lease_until: now + this.leaseMs })
          .where("identifier", "in", due.map((r) => r.identifier))
          .execute();
      }
      return due;
      // A scope of its own: the row locks, not a store-wide writer lock, keep claims apart.
    }, { scope: `meter-claim:${this.owner}` });
  }

  private async send(row: OutboxRow): Promise<SendResult> {
    const { ctx } = this;
    const now = ctx.clock.now();
    if (now - row.event_time > MAX_EVENT_AGE_MS) {
      const reason = `usage of ${new Date(row.event_time).toISOString()} is older than the 35 days Stripe accepts: not reported`;
      ctx.log.error({ identifier: row.identifier, project: row.project_id, valueMicros: row.value_micros }, `meter report failed: ${reason}`);
      await this.finish(row, { status: "failed", attempts: row.attempts, last_error: reason });
      return "failed";
    }
    try {
      await ctx.stripe.billing.meterEvents.create(
        {
          event_name: ctx.settings.meterEventName,
          identifier: row.identifier,
          timestamp: Math.floor(row.event_time / 1000),
          payload: { stripe_customer_id: row.stripe_customer_id, value: String(row.value_micros) },
        },
        { idempotencyKey: row.identifier, maxNetworkRetries: 0 },
      );
    } catch (err) {
      return this.failed(row, err);
    }
    this.failures = 0;
    await this.finish(row, { status: "sent", attempts: row.attempts + 1, sent_time: ctx.clock.now(), last_error: null });
    return "sent";
  }

  private async failed(row: OutboxRow, err: unknown): Promise<SendResult> {
    const { ctx } = this;
    const attempts = row.attempts + 1;
    const reason = describe(err);
    if (!isRetryable(err)) {
      ctx.log.error({ identifier: row.identifier, project: row.project_id, attempts, reason }, "meter report refused by Stripe: marked failed");
      await this.finish(row, { status: "failed", attempts, last_error: reason });
      return "failed";
    }
    const { meterBackoffMs: base, meterBackoffMaxMs: max } = ctx.settings;
    const now = ctx.clock.now();
    this.failures++;
    this.pausedUntil = now + backoffMs(this.failures, base, max);
    ctx.log.warn({ identifier: row.identifier, attempts, reason }, "meter report failed; will retry");
    await this.finish(row, { status: "pending", attempts, last_error: reason, next_attempt_time: now + backoffMs(attempts, base, max) });
    return "retry";
  }

  /** Writes a row's outcome and lets go of it (a retry only while this sender still holds it). */
  private async finish(row: OutboxRow, set: Partial<OutboxRow>): Promise<void> {
    let q = this.ctx.database.db.updateTable("meter_outbox").set({ ...set, lease_owner: null, lease_until: null }).where("identifier", "=", row.identifier);
    if (set.status === "pending") q = q.where("lease_owner", "=", this.owner);
    await q.execute();
  }

  /** Hands rows back without counting an attempt: all this sender holds, or the ones named. */
  private async release(identifiers?: string[]): Promise<void> {
    let q = this.ctx.database.db.updateTable("meter_outbox").set({ lease_owner: null, lease_until: null }).where("lease_owner", "=", this.owner).where("status", "=", "pending");
    if (identifiers) q = q.where("identifier", "in", identifiers);
    await q.execute();
  }

  /** Housekeeping: sent reports and processed webhook event ids past any redelivery. */
  private async prune(now: number): Promise<void> {
    this.lastPrune = now;
    await this.ctx.database.db.deleteFrom("meter_outbox").where("status", "=", "sent").where("sent_time", "<", now - KEEP_SENT_MS).execute();
    await this.ctx.database.db.deleteFrom("stripe_event").where("process_time", "<", now - KEEP_EVENTS_MS).execute();
  }
}
