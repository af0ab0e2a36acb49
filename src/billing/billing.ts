/**
 * Billing: plans on offer, the subscription as the account records it, credit
 * grants by operators, the ledger read back, and (with Stripe configured)
 * Checkout, ProcessCheckout, the customer portal, webhooks and the metered
 * usage sender. Without Stripe keys the Stripe methods refuse clearly.
 */
import { actsForPlatform } from "../auth/principal.js";
import type { Caller } from "../accounts/accounts.js";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import type { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import type { Clock } from "../clock.js";
import type { Database } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import type { CheckedProject } from "../auth/tenancy.js";
import { accountName, subscriptionName } from "../names/names.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import * as ledger from "../ledger/ledger.js";
import type { Micros } from "../ledger/micros.js";
import { callerEnvironment, requireLiveMoney } from "../ledger/sandbox.js";
import type { Logger } from "../logger.js";
import type { Plan, Plans } from "../plans/plans.js";
import { monthOf } from "../usage/period.js";
import * as store from "./billing-store.js";
import { Checkout, type CheckoutItem, type Fulfilment } from "./checkout.js";
import { KeyedLock } from "./keyed-lock.js";
import { MeterSender } from "./outbox.js";
import { createStripeClient, viaStripe } from "./stripe-client.js";
import type { StripeContext, StripeSettings } from "./stripe-context.js";
import { isLive, priceOf } from "./subscriptions.js";
import { StripeWebhooks } from "./webhooks.js";

export interface BillingDeps {
  database: Database;
  plans: Plans;
  clock: Clock;
  log: Logger;
  /** Admins of this project operate the platform: they may grant credits to any account. */
  platformProject: string;
  /** In development, project admins may grant their own account credits (for trying things out). */
  selfGrant: boolean;
  /** Stripe, when STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET are set. */
  stripe?: StripeSettings;
  /** Whether a Checkout or portal return URL is on one of the deployment's origins. */
  returnUrlAllowed(url: string): boolean;
  invalidatePlan(projectId: string): void;
  /** Brings the balance up to this instant before the ledger is read (metering returns expired holds). */
  settleBalance?(projectId: string): Promise<void>;
  /** Revenue share: inside a clawback's transaction, takes back publishers' share of spent credits (src/marketplace). */
  onConsumerClawback?: StripeContext["onConsumerClawback"];
  /** Told of credits granted or bought (Checkout) once committed (the event stream publishes live ones); not of a retry's. */
  onCreditsAdded?(row: ledger.LedgerRow, balanceMicros: Micros): void;
}

/** The Stripe-backed parts, present only with Stripe configured. */
interface StripeParts {
  ctx: StripeContext;
  checkout: Checkout;
  sender: MeterSender;
  webhooks: StripeWebhooks;
}

export class Billing {
  private readonly stripe?: StripeParts;

  constructor(private readonly deps: BillingDeps) {
    if (deps.stripe) {
      const { database, clock, log, plans, invalidatePlan, onConsumerClawback, onCreditsAdded } = deps;
      const ctx: StripeContext = { stripe: createStripeClient(deps.stripe), settings: deps.stripe, database, clock, log, plans, invalidatePlan, locks: new KeyedLock(), onConsumerClawback, onCreditsAdded };
      const checkout = new Checkout(ctx);
      this.stripe = { ctx, checkout, sender: new MeterSender(ctx), webhooks: new StripeWebhooks(ctx, checkout) };
    }
  }

  /** The webhook receiver; undefined without Stripe keys. */
  get webhooks(): StripeWebhooks | undefined {
    return this.stripe?.webhooks;
  }

  /** The metered-usage sender; undefined without Stripe keys. */
  get meter(): MeterSender | undefined {
    return this.stripe?.sender;
  }

  /** Starts reporting metered usage to Stripe (when configured). */
  start(): void {
    this.stripe?.sender.start();
  }

  /** Stops the usage sender cleanly (before the database closes). */
  async stop(): Promise<void> {
    await this.stripe?.sender.stop();
  }

  plans() {
    return [...this.deps.plans.all].sort((a, b) => a.monthlyPriceMicros - b.monthlyPriceMicros);
  }

  /** The Stripe price Checkout sells a plan at; empty when it is not sold there. */
  priceIdOf(plan: Plan): string {
    return (this.deps.stripe && priceOf(this.deps.stripe.prices, plan.id)) ?? "";
  }

  /** The subscription; Stripe ids only for admins. */
  async subscription(caller: Caller, projectId: CheckedProject) {
    const name = subscriptionName(projectId);
    const db = this.deps.database.db;
    const row = await db.selectFrom("account").selectAll().where("project_id", "=", projectId).executeTakeFirst();
    if (!row) throw notFound(`subscription "${name}"`);
    const customer = await store.findCustomer(db, projectId);
    const paid = customer && isLive(customer.stripe_status) && customer.current_period_start !== null && customer.current_period_end !== null;
    const period = paid ? { start: customer.current_period_start!, end: customer.current_period_end! } : monthOf(this.deps.clock.now());
    const admin = caller.role === Role.ADMIN;
    return {
      row,
      plan: this.deps.plans.byId(row.plan_tier),
      period,
      cancelAtPeriodEnd: Boolean(paid && customer.cancel_at_period_end),
      stripeCustomerId: admin ? (customer?.stripe_customer_id ?? "") : "",
      stripeSubscriptionId: admin ? (customer?.stripe_subscription_id ?? "") : "",
    };
  }

  /** A Stripe Checkout session for a paid plan or a credit pack. */
  async createCheckout(caller: Caller, projectId: CheckedProject, item: CheckoutItem, successUrl: string, cancelUrl: string) {
    requireLiveMoney(caller);
    const stripe = this.requireStripe();
    this.requireReturnUrl("success_url", successUrl);
    this.requireReturnUrl("cancel_url", cancelUrl);
    return this.viaStripe("create a checkout session", () => stripe.checkout.create(projectId, item, successUrl, cancelUrl));
  }

  /** Fulfils a paid Checkout session of the caller's account, once. */
  async processCheckout(caller: Caller, projectId: CheckedProject, sessionId: string): Promise<Fulfilment & { tier: PlanTier }> {
    requireLiveMoney(caller);
    const stripe = this.requireStripe();
    const done = await this.viaStripe("process a checkout session", () => stripe.checkout.fulfil(projectId, sessionId, { via: "process_checkout", actor: caller.subject }));
    return { ...done, tier: this.deps.plans.byId(done.planTier).tier };
  }

  /** A Stripe customer-portal session for the caller's account. */
  async createPortal(caller: Caller, projectId: CheckedProject, returnUrl: string): Promise<string> {
    requireLiveMoney(caller);
    const stripe = this.requireStripe();
    const parent = accountName(projectId);
    this.requireReturnUrl("return_url", returnUrl);
    const customer = await store.findCustomer(this.deps.database.db, projectId);
    if (!customer) {
      if (!(await store.accountPlanTier(this.deps.database.db, projectId))) throw notFound(`account "${parent}"`);
      throw failedPrecondition("the account has no Stripe customer yet: buy a plan or credits first (CreateCheckoutSession)", "NO_STRIPE_CUSTOMER");
    }
    const session = await this.viaStripe("create a portal session", () => stripe.ctx.stripe.billingPortal.sessions.create({ customer: customer.stripe_customer_id, return_url: returnUrl }));
    return session.url;
  }

  /**
   * An operator's grant, idempotent by request id (a retry books nothing
   * more). Made with a test key, or to a test-mode project, it grants sandbox
   * credits (docs/test-mode.md).
   */
  async addCredits(caller: Caller, target: CheckedProject, amountMicros: Micros, reason: string, requestId: string) {
    const parent = accountName(target);
    const platformAdmin = actsForPlatform(caller, this.deps.platformProject) && caller.role === Role.ADMIN;
    if (!platformAdmin) {
      if (target !== caller.projectId) throw notFound(`account "${parent}"`);
      if (!this.deps.selfGrant) {
        throw permissionDenied(`only admins of the platform project "${this.deps.platformProject}" grant credits`, "PLATFORM_ADMIN_REQUIRED");
      }
    }
    const granted = await this.deps.database.transaction(async (tx) => {
      const account = await tx.selectFrom("account").select(["project_id", "environment"]).where("project_id", "=", target).executeTakeFirst();
      if (!account) throw notFound(`account "${parent}"`);
      // A test-mode project has only a sandbox: even the platform's live grant books there.
      const environment = account.environment === "test" ? "test" : callerEnvironment(caller);
      const { row, duplicate } = await ledger.book(
        tx,
        { projectId: target, environment, kind: "grant", amountMicros, idempotencyKey: `grant:${requestId}`, description: reason, actor: caller.subject },
        this.deps.clock.now(),
      );
      if (duplicate && (row.amount_micros !== amountMicros || row.kind !== "grant")) {
        throw invalidArgument("request_id", "was already used for a different grant");
      }
      return { row, duplicate, balance: await ledger.balanceOf(tx, target, environment) };
    });
    if (!granted.duplicate) this.deps.onCreditsAdded?.(granted.row, granted.balance);
    return { row: granted.row, balance: granted.balance };
  }

  async transactions(_caller: Caller, projectId: CheckedProject, filter: ledger.LedgerFilter, size: number, token: string) {
    await this.deps.settleBalance?.(projectId);
    const n = pageSize(size);
    const before = decodePageToken(token, ["number"]) as [number] | undefined;
    const rows = await ledger.listEntries(this.deps.database.db, projectId, filter, n + 1, before?.[0]);
    return pageOf(rows, n, (r) => [r.seq]);
  }

  /** Stripe-backed methods without Stripe keys: a clear precondition failure. */
  private requireStripe(): StripeParts {
    if (!this.stripe) {
      throw failedPrecondition("billing is not configured: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET", "BILLING_NOT_CONFIGURED");
    }
    return this.stripe;
  }

  private requireReturnUrl(field: string, url: string): void {
    if (!this.deps.returnUrlAllowed(url)) throw invalidArgument(field, "must be on one of the deployment's allowed origins (FORMSTATE_CORS_ORIGINS)");
  }

  /** A call that reaches Stripe (stripe-client.ts viaStripe, with this domain's log). */
  private viaStripe<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return viaStripe(this.deps.log, what, fn);
  }
}
