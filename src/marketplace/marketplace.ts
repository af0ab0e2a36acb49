/**
 * The marketplace's money for publishers: earnings booked with consumers'
 * debits (earnings.ts), clawed back when a consumer's payment is refunded
 * or disputed, read by publishers (earnings-report.ts), and paid to their
 * Stripe Connect accounts (payouts.ts). Without Stripe keys earnings are
 * still booked and read; linking an account answers FAILED_PRECONDITION.
 */
import type { Caller } from "../accounts/accounts.js";
import type { CheckedProject } from "../auth/tenancy.js";
import { accountName } from "../names/names.js";
import { createStripeClient, type Stripe, viaStripe } from "../billing/stripe-client.js";
import type { StripeSettings } from "../billing/stripe-context.js";
import type { Clock } from "../clock.js";
import type { MarketplaceConfig } from "../config.js";
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { failedPrecondition, invalidArgument, notFound } from "../errors.js";
import { requireLiveMoney } from "../ledger/sandbox.js";
import type { Logger } from "../logger.js";
import { type ChargedUsage, type Publishers, bookUsageEarnings, clawBack, restore } from "./earnings.js";
import { earningsReport } from "./earnings-report.js";
import { PayoutSender } from "./payouts.js";

export interface MarketplaceDeps {
  database: Database;
  clock: Clock;
  log: Logger;
  config: MarketplaceConfig;
  publishers: Publishers;
  stripe?: StripeSettings;
  /** Whether an onboarding return URL is on one of the deployment's origins. */
  returnUrlAllowed(url: string): boolean;
}

/** A consumer's credits taken back because Stripe refunded or disputed the payment that bought them. */
export interface ConsumerClawback {
  projectId: string;
  /** Micro-USD taken back from the consumer's balance by this event (positive), or given back (negative). */
  taken: number;
  /** The consumer's balance after it. */
  balanceAfter: number;
  /** Unique per event (the consumer ledger entry's idempotency key). */
  key: string;
}

export class Marketplace {
  private readonly stripe?: Stripe;
  /** The payout sender; undefined without Stripe keys. */
  readonly payouts?: PayoutSender;

  constructor(private readonly deps: MarketplaceDeps) {
    if (deps.stripe) {
      this.stripe = createStripeClient(deps.stripe);
      this.payouts = new PayoutSender({ database: deps.database, clock: deps.clock, log: deps.log, stripe: this.stripe, config: deps.config, timeoutMs: deps.stripe.timeoutMs });
    }
  }

  start(): void {
    this.payouts?.start();
  }

  async stop(): Promise<void> {
    await this.payouts?.stop();
  }

  /** Metering's one call: inside the transaction of a usage debit, the publishers' split of it. */
  async bookUsage(tx: Db, record: ChargedUsage): Promise<void> {
    await bookUsageEarnings(tx, this.deps.publishers, record, this.deps.clock.now());
  }

  /**
   * Billing's one call, inside the transaction that takes a consumer's
   * credits back: the part of them already spent (what the event takes
   * below zero) claws back the publishers' share of the consumer's latest
   * marketplace spending. Credits still unspent take nothing from anyone.
   * Credits given back (a dispute won: `taken` negative) give the
   * publishers back what that charge's disputes took from them.
   */
  async consumerClawback(tx: Db, c: ConsumerClawback): Promise<number> {
    if (c.taken < 0) {
      // `dispute:{charge}:{n}` -> this charge's disputes, `dispute:{charge}:`.
      const prefix = c.key.slice(0, c.key.lastIndexOf(":") + 1);
      return -(await restore(tx, c.projectId, -c.taken, c.key, prefix, this.deps.clock.now()));
    }
    const unfunded = Math.min(c.taken, Math.max(0, -c.balanceAfter));
    return clawBack(tx, c.projectId, unfunded, c.key, this.deps.clock.now());
  }

  /** GetPublisherEarnings (the tenancy interceptor checked the project is the caller's). */
  async earnings(_caller: Caller, projectId: CheckedProject, start: number | undefined, end: number | undefined) {
    const parent = accountName(projectId);
    const db = this.deps.database.db;
    await this.requireAccount(db, parent, projectId);
    const report = await earningsReport(db, projectId, start ?? 0, end ?? this.deps.clock.now() + 1);
    const account = await db.selectFrom("payout_account").select("stripe_account_id").where("project_id", "=", projectId).executeTakeFirst();
    return { ...report, stripeAccountId: account?.stripe_account_id ?? "" };
  }

  /** LinkPayoutAccount: the project's connected account (created once) and a fresh onboarding link. */
  async linkAccount(caller: Caller, projectId: CheckedProject, refreshUrl: string, returnUrl: string) {
    // Payouts are real money: a test-mode project (or a test key) never links a Stripe account.
    requireLiveMoney(caller, "link a payout account for real money");
    const parent = accountName(projectId);
    const stripe = this.stripe;
    if (!stripe) throw failedPrecondition("billing is not configured: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET", "BILLING_NOT_CONFIGURED");
    for (const [field, url] of [["refresh_url", refreshUrl], ["return_url", returnUrl]] as const) {
      if (!this.deps.returnUrlAllowed(url)) throw invalidArgument(field, "must be on one of the deployment's allowed origins (FORMSTATE_CORS_ORIGINS)");
    }
    const { database, clock } = this.deps;
    await this.requireAccount(database.db, parent, projectId);
    return this.viaStripe("link a payout account", async () => {
      let accountId = (await database.db.selectFrom("payout_account").select("stripe_account_id").where("project_id", "=", projectId).executeTakeFirst())?.stripe_account_id;
      if (!accountId) {
        // Stripe's idempotency key makes a concurrent or retried first link create one account.
        const created = await stripe.accounts.create(
          { type: "express", metadata: { formstate_project: projectId }, capabilities: { transfers: { requested: true } } },
          { idempotencyKey: `formstate-connect-${projectId}` },
        );
        accountId = created.id;
        await database.transaction((tx) =>
          tx.insertInto("payout_account").values({ project_id: projectId, stripe_account_id: created.id, create_time: clock.now() }).onConflict((oc) => oc.column("project_id").doNothing()).execute(),
        );
        accountId = (await database.db.selectFrom("payout_account").select("stripe_account_id").where("project_id", "=", projectId).executeTakeFirstOrThrow()).stripe_account_id;
      }
      const link = await stripe.accountLinks.create({ account: accountId, refresh_url: refreshUrl, return_url: returnUrl, type: "account_onboarding" });
      return { stripeAccountId: accountId, url: link.url, expiresAt: link.expires_at * 1000 };
    });
  }

  /** ListPayouts, newest first. */
  async listPayouts(_caller: Caller, projectId: CheckedProject, size: number, token: string) {
    const n = pageSize(size);
    const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
    let q = this.deps.database.db.selectFrom("payout").selectAll().where("publisher_project", "=", projectId);
    if (after) q = q.where((eb) => eb.or([eb("create_time", "<", after[0]), eb.and([eb("create_time", "=", after[0]), eb("payout_id", "<", after[1])])]));
    const rows = await q.orderBy("create_time", "desc").orderBy("payout_id", "desc").limit(n + 1).execute();
    return pageOf(rows, n, (r) => [Number(r.create_time), r.payout_id]);
  }

  private async requireAccount(db: Db, parent: string, projectId: string): Promise<void> {
    const row = await db.selectFrom("account").select("project_id").where("project_id", "=", projectId).executeTakeFirst();
    if (!row) throw notFound(`account "${parent}"`);
  }

  /** A call that reaches Stripe (stripe-client.ts viaStripe, with this domain's log). */
  private viaStripe<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return viaStripe(this.deps.log, what, fn);
  }
}
