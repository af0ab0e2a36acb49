/**
 * Payouts of publisher earnings to Stripe Connect accounts, through an
 * outbox (the `payout` table), in two steps:
 * - scheduling: once per period (FORMSTATE_PAYOUT_INTERVAL_MS), a publisher
 *   with a linked account and a balance of at least
 *   FORMSTATE_PAYOUT_THRESHOLD_MICROS gets one payout row of its balance in
 *   whole cents; the same transaction books the `payout` entry (−amount)
 *   on its earnings ledger, so the balance and the outbox move together.
 *   A row is unique per (publisher, period): several instances, restarts or
 *   ticks in one period schedule it once. The sub-cent rest, and any
 *   negative balance left by clawbacks, carry forward.
 * - sending: due rows are leased to one sender and sent with
 *   `stripe.transfers.create` under the idempotency key `fs-payout-{id}`,
 *   so a retry after a lost answer, a crash after Stripe accepted, or a
 *   second instance creates one transfer. Failures Stripe may cure later
 *   are retried with exponential backoff; a transfer Stripe refuses as it
 *   is marks the payout failed and gives its amount back to the balance
 *   (`payout_reversal`), to be paid with the next one.
 */
import type { Selectable } from "kysely";
import { backoffMs } from "../billing/outbox.js";
import { describe, isRetryable, type Stripe } from "../billing/stripe-client.js";
import type { Clock } from "../clock.js";
import type { MarketplaceConfig } from "../config.js";
import type { Database } from "../db/database.js";
import { newId } from "../ids.js";
import type { Logger } from "../logger.js";
import { append, balanceOf } from "./earnings.js";
import type { PayoutTable } from "./marketplace-tables.js";

export type PayoutRow = Selectable<PayoutTable>;

/** Stripe transfers are in cents: 1 cent = 10,000 micro-USD. */
export const MICROS_PER_CENT = 10_000;
const BATCH = 50;

/** The idempotency key of a payout's transfer: the same on every attempt, in every instance. */
export const transferKey = (payoutId: string) => `fs-payout-${payoutId}`;

export interface PayoutDeps {
  database: Database;
  clock: Clock;
  log: Logger;
  stripe: Stripe;
  config: MarketplaceConfig;
  /** Request timeout of the Stripe client, ms (for the lease). */
  timeoutMs: number;
}

export class PayoutSender {
  readonly owner = `payout-${newId(10)}`;
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private stopping = false;

  constructor(private readonly deps: PayoutDeps) {}

  private get leaseMs(): number {
    return 2 * this.deps.timeoutMs + 10_000;
  }

  start(): void {
    if (this.timer || this.stopping) return;
    const tick = () => {
      this.running = this.pass()
        .catch((err: unknown) => {
          if (!this.stopping) this.deps.log.warn({ reason: describe(err) }, "payout pass failed");
        })
        .then(() => {
          if (!this.stopping) this.timer = setTimeout(tick, this.deps.config.payoutTickMs).unref();
        });
    };
    this.timer = setTimeout(tick, this.deps.config.payoutTickMs).unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.deps.database.db.updateTable("payout").set({ lease_owner: null, lease_until: null }).where("lease_owner", "=", this.owner).where("status", "=", "pending").execute();
  }

  /** One pass: schedules this period's payouts, then sends what is due. Returns transfers made. */
  async pass(): Promise<{ scheduled: number; paid: number }> {
    const scheduled = await this.schedule();
    const paid = await this.send();
    return { scheduled, paid };
  }

  /** The current period's key: payouts are unique per publisher and period. */
  periodKey(now: number): string {
    return String(Math.floor(now / this.deps.config.payoutIntervalMs));
  }

  /** Creates this period's payout for every linked publisher at or above the threshold. */
  async schedule(): Promise<number> {
    const { database, clock, config } = this.deps;
    const now = clock.now();
    const period = this.periodKey(now);
    const linked = await database.db
      .selectFrom("payout_account as a")
      .select(["a.project_id", "a.stripe_account_id"])
      .where(({ and, not, exists, selectFrom }) =>
        and([
          not(exists(selectFrom("payout as p").select("p.payout_id").whereRef("p.publisher_project", "=", "a.project_id").where("p.period_key", "=", period))),
          // A test-mode project is never paid real money (it cannot link an account either).
          not(exists(selectFrom("account as t").select("t.project_id").whereRef("t.project_id", "=", "a.project_id").where("t.environment", "=", "test"))),
        ]),
      )
      .execute();
    let n = 0;
    for (const acct of linked) {
      const made = await database.transaction(async (tx) => {
        const taken = await tx.selectFrom("payout").select("payout_id").where("publisher_project", "=", acct.project_id).where("period_key", "=", period).executeTakeFirst();
        if (taken) return false;
        const balance = await balanceOf(tx, acct.project_id);
        if (balance < config.payoutThresholdMicros) return false;
        const amount = Math.floor(balance / MICROS_PER_CENT) * MICROS_PER_CENT;
        if (amount <= 0) return false;
        const payoutId = newId();
        await tx
          .insertInto("payout")
          .values({
            payout_id: payoutId,
            publisher_project: acct.project_id,
            period_key: period,
            stripe_account_id: acct.stripe_account_id,
            amount_micros: amount,
            status: "pending",
            attempts: 0,
            next_attempt_time: now,
            lease_owner: null,
            lease_until: null,
            last_error: null,
            stripe_transfer_id: null,
            create_time: now,
            paid_time: null,
          })
          .execute();
        await append(
          tx,
          {
            publisher_project: acct.project_id,
            kind: "payout",
            resource: "",
            consumer_project: null,
            usage_record_id: null,
            payout_id: payoutId,
            earning_entry_id: null,
            share_bps: 0,
            gross_micros: 0,
            amount_micros: -amount,
            platform_fee_micros: 0,
            idempotency_key: `payout:${payoutId}`,
          },
          now,
        );
        return true;
        // The publisher's scope: its earnings balance is read and moved under one lock.
      }, { scope: `payout:${acct.project_id}` }).catch((err: unknown) => {
        // Another instance scheduled the same (publisher, period) first: the unique index refused ours.
        this.deps.log.debug({ project: acct.project_id, reason: describe(err) }, "payout already scheduled elsewhere");
        return false;
      });
      if (made) n++;
    }
    return n;
  }

  /** Sends due payouts, one at a time (payouts are few and each is money). */
  async send(): Promise<number> {
    const rows = await this.claim(this.deps.clock.now());
    let paid = 0;
    for (const row of rows) {
      if (this.stopping) break;
      if (await this.transfer(row)) paid++;
    }
    return paid;
  }

  private claim(now: number): Promise<PayoutRow[]> {
    const { database } = this.deps;
    return database.transaction(async (tx) => {
      let q = tx
        .selectFrom("payout")
        .selectAll()
        .where("status", "=", "pending")
        .where("next_attempt_time", "<=", now)
        .where((eb) => eb.or([eb("lease_until", "is", null), eb("lease_until", "<=", now)]))
        .orderBy("next_attempt_time")
        .limit(BATCH);
      if (database.dialect === "postgres") q = q.forUpdate().skipLocked();
      const due = await q.execute();
      if (due.length) {
        await tx.updateTable("payout").set({ lease_owner: this.owner, lease_until: now + this.leaseMs }).where("payout_id", "in", due.map((r) => r.payout_id)).execute();
      }
      return due;
    }, { scope: `payout-claim:${this.owner}` });
  }

  private async transfer(row: PayoutRow): Promise<boolean> {
    const { stripe, database, clock, log, config } = this.deps;
    let transfer: Stripe.Transfer;
    try {
      transfer = await stripe.transfers.create(
        {
          amount: Math.round(Number(row.amount_micros) / MICROS_PER_CENT),
          currency: "usd",
          destination: row.stripe_account_id,
          transfer_group: `formstate-payout-${row.payout_id}`,
          metadata: { formstate_project: row.publisher_project, formstate_payout: row.payout_id },
        },
        { idempotencyKey: transferKey(row.payout_id), maxNetworkRetries: 0 },
      );
    } catch (err) {
      const attempts = row.attempts + 1;
      const reason = describe(err);
      const now = clock.now();
      if (isRetryable(err)) {
        log.warn({ payout: row.payout_id, attempts, reason }, "payout transfer failed; will retry");
        await database.db
          .updateTable("payout")
          .set({ attempts, last_error: reason, next_attempt_time: now + backoffMs(attempts, config.payoutBackoffMs, config.payoutBackoffMaxMs), lease_owner: null, lease_until: null })
          .where("payout_id", "=", row.payout_id)
          .where("lease_owner", "=", this.owner)
          .execute();
        return false;
      }
      log.error({ payout: row.payout_id, project: row.publisher_project, attempts, reason }, "payout transfer refused by Stripe: the amount goes back to the balance");
      await database.transaction(async (tx) => {
        const updated = await tx.updateTable("payout").set({ status: "failed", attempts, last_error: reason, lease_owner: null, lease_until: null }).where("payout_id", "=", row.payout_id).where("status", "=", "pending").executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) return;
        await append(
          tx,
          {
            publisher_project: row.publisher_project,
            kind: "payout_reversal",
            resource: "",
            consumer_project: null,
            usage_record_id: null,
            payout_id: row.payout_id,
            earning_entry_id: null,
            share_bps: 0,
            gross_micros: 0,
            amount_micros: Number(row.amount_micros),
            platform_fee_micros: 0,
            idempotency_key: `payout-reversal:${row.payout_id}`,
          },
          now,
        );
      }, { scope: `payout:${row.publisher_project}` });
      return false;
    }
    await database.db
      .updateTable("payout")
      .set({ status: "paid", attempts: row.attempts + 1, stripe_transfer_id: transfer.id, paid_time: clock.now(), last_error: null, lease_owner: null, lease_until: null })
      .where("payout_id", "=", row.payout_id)
      .execute();
    return true;
  }
}
