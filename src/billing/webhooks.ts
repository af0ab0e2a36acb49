/**
 * `POST /webhooks/stripe`: Stripe's events, verified on the raw body with the
 * endpoint secret, each applied once (its id recorded in the transaction of
 * its effect). Where order matters the object is read again from Stripe, so
 * late, early or repeated deliveries all end in Stripe's current state.
 * Refunds and disputes of credit purchases take the credits back
 * (clawbacks.ts); voided invoices re-read the subscription.
 * Answers: 200 applied or ignored, 400 bad signature (nothing changes),
 * 413 body over 1 MiB, 500 not processed now (Stripe delivers it again),
 * 503 billing not configured.
 */
import type http from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import * as store from "./billing-store.js";
import type { Checkout } from "./checkout.js";
import { describe, idOf, isMissing, type Stripe } from "./stripe-client.js";
import type { StripeContext } from "./stripe-context.js";
import { applySubscription, snapshotOf } from "./subscriptions.js";
import { applyClawbacks } from "./clawbacks.js";

export const STRIPE_WEBHOOK_PATH = "/webhooks/stripe";
export const MAX_WEBHOOK_BYTES = 1024 * 1024;

export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
}

interface Processed {
  duplicate: boolean;
  outcome: string;
}

/** The subscription an invoice bills, in current and older API versions. */
function subscriptionOfInvoice(invoice: Stripe.Invoice): string | undefined {
  const legacy = invoice as unknown as { subscription?: string | { id: string } | null };
  return idOf(invoice.parent?.subscription_details?.subscription) ?? idOf(legacy.subscription);
}

export class StripeWebhooks {
  constructor(
    private readonly ctx: StripeContext,
    private readonly checkout: Checkout,
  ) {}

  /** Verifies and applies one delivery. */
  async receive(raw: Buffer, signature: string | undefined): Promise<WebhookAnswer> {
    if (!signature) return { status: 400, body: { error: "missing Stripe-Signature header" } };
    let event: Stripe.Event;
    try {
      event = await this.ctx.stripe.webhooks.constructEventAsync(raw, signature, this.ctx.settings.webhookSecret, undefined, undefined, this.ctx.clock.now());
    } catch (err) {
      this.ctx.log.warn({ reason: describe(err) }, "Stripe webhook refused: signature not valid");
      return { status: 400, body: { error: "invalid Stripe signature" } };
    }
    try {
      const { duplicate, outcome } = await this.process(event);
      this.ctx.log.info({ eventId: event.id, type: event.type, duplicate, outcome }, "Stripe event");
      return { status: 200, body: { received: true, duplicate, outcome } };
    } catch (err) {
      this.ctx.log.error({ eventId: event.id, type: event.type, reason: describe(err) }, "Stripe event not processed; Stripe will deliver it again");
      return { status: 500, body: { error: "the event could not be processed now; deliver it again" } };
    }
  }

  private process(event: Stripe.Event): Promise<Processed> {
    switch (event.type) {
      case "checkout.session.completed":
      case "checkout.session.async_payment_succeeded":
        return this.onCheckout(event, event.data.object);
      case "customer.subscription.created":
      case "customer.subscription.updated":
      case "customer.subscription.deleted":
        return this.onSubscription(event, event.data.object.id, idOf(event.data.object.customer));
      case "charge.refunded":
        return this.onCharge(event, event.data.object.id);
      case "charge.dispute.created":
      case "charge.dispute.updated":
      case "charge.dispute.closed":
      case "charge.dispute.funds_withdrawn":
      case "charge.dispute.funds_reinstated": {
        const chargeId = idOf(event.data.object.charge);
        return chargeId ? this.onCharge(event, chargeId) : this.record(event, null, "ignored: a dispute without a charge");
      }
      case "invoice.paid":
      case "invoice.voided":
      case "invoice.payment_failed": {
        const invoice = event.data.object;
        const subscriptionId = subscriptionOfInvoice(invoice);
        if (!subscriptionId) return this.record(event, null, "ignored: not a subscription invoice");
        if (event.type === "invoice.payment_failed") this.ctx.log.warn({ invoice: invoice.id, subscription: subscriptionId }, "Stripe: a subscription payment failed");
        return this.onSubscription(event, subscriptionId, idOf(invoice.customer));
      }
      default:
        return this.record(event, null, `ignored: ${event.type} is not handled`);
    }
  }

  /** A finished Checkout: the same confirmation and fulfilment as ProcessCheckout. */
  private async onCheckout(event: Stripe.Event, session: Stripe.Checkout.Session): Promise<Processed> {
    const projectId = session.client_reference_id;
    if (!projectId || session.metadata?.formstate_project !== projectId) return this.record(event, null, "ignored: not a Formstate checkout");
    try {
      const done = await this.checkout.fulfil(projectId, session.id, { via: "webhook", event });
      return { duplicate: done.duplicateEvent, outcome: done.alreadyProcessed ? "already fulfilled" : `fulfilled: ${done.grantedMicros} micro-USD` };
    } catch (err) {
      // Not this account's, or not paid yet (an async payment method: its own event follows).
      if (err instanceof ConnectError && (err.code === Code.NotFound || err.code === Code.FailedPrecondition)) return this.record(event, null, `ignored: ${err.rawMessage}`);
      throw err;
    }
  }

  /**
   * A charge was refunded or disputed: read the charge and its disputes from
   * Stripe now and bring the credits it bought in line (clawbacks.ts). A
   * charge that paid no credit pack (a subscription invoice) re-reads the
   * customer's subscription instead, so the plan follows Stripe.
   */
  private async onCharge(event: Stripe.Event, chargeId: string): Promise<Processed> {
    const { ctx } = this;
    let charge: Stripe.Charge;
    try {
      charge = await ctx.stripe.charges.retrieve(chargeId);
    } catch (err) {
      if (isMissing(err)) return this.record(event, null, "ignored: unknown charge");
      throw err;
    }
    const paymentIntent = idOf(charge.payment_intent);
    const purchase = paymentIntent ? await store.fulfillmentOfPaymentIntent(ctx.database.db, paymentIntent) : undefined;
    if (!purchase) {
      const customerId = idOf(charge.customer);
      const projectId = customerId ? await store.projectOfCustomer(ctx.database.db, customerId) : undefined;
      const subscriptionId = projectId ? (await store.findCustomer(ctx.database.db, projectId))?.stripe_subscription_id : undefined;
      if (subscriptionId) return this.onSubscription(event, subscriptionId, customerId);
      return this.record(event, null, "ignored: not a Formstate credit purchase");
    }
    const projectId = purchase.project_id;
    return ctx.locks.run(`project:${projectId}`, async () => {
      if (await store.eventSeen(ctx.database.db, event.id)) return { duplicate: true, outcome: "duplicate" };
      // Read after the lock, so two events of one charge book against the same, latest state.
      const fresh = await ctx.stripe.charges.retrieve(chargeId);
      const disputes = await ctx.stripe.disputes.list({ charge: chargeId, limit: 100 });
      const state = { id: chargeId, amount: fresh.amount, amountRefunded: fresh.amount_refunded, disputes: disputes.data.map((d) => ({ amount: d.amount, status: d.status })) };
      const now = ctx.clock.now();
      return ctx.database.transaction(async (tx): Promise<Processed> => {
        if (await store.eventSeen(tx, event.id)) return { duplicate: true, outcome: "duplicate" };
        // Credits already spent on other projects' resources take the publishers' share back too (src/marketplace).
        const onEntry = ctx.onConsumerClawback && ((e: { taken: number; balanceAfter: number; key: string }) => ctx.onConsumerClawback!(tx, { projectId, ...e }));
        const moved = await applyClawbacks(tx, purchase, state, now, onEntry || undefined);
        const outcome = moved.refund || moved.dispute ? `applied: credits taken back ${moved.refund} (refund), ${moved.dispute} (dispute)` : "applied: nothing to change";
        await store.recordEvent(tx, event, projectId, outcome, now);
        return { duplicate: false, outcome };
      }, { scope: projectId });
    });
  }

  /** A subscription changed: read it from Stripe now and store that state. */
  private async onSubscription(event: Stripe.Event, subscriptionId: string, customerId: string | undefined): Promise<Processed> {
    const { ctx } = this;
    const projectId = customerId ? await store.projectOfCustomer(ctx.database.db, customerId) : undefined;
    if (!projectId) return this.record(event, null, "ignored: unknown customer");
    return ctx.locks.run(`project:${projectId}`, async () => {
      if (await store.eventSeen(ctx.database.db, event.id)) return { duplicate: true, outcome: "duplicate" };
      const sub = snapshotOf(await ctx.stripe.subscriptions.retrieve(subscriptionId));
      const now = ctx.clock.now();
      const done = await ctx.database.transaction(async (tx): Promise<Processed> => {
        if (await store.eventSeen(tx, event.id)) return { duplicate: true, outcome: "duplicate" };
        let outcome = `ignored: subscription ${sub.id} belongs to another customer`;
        if (sub.customerId === customerId) {
          const { applied, planTier } = await applySubscription(tx, projectId, sub, ctx.settings.prices, now);
          outcome = applied ? `applied: ${sub.status}, plan ${planTier}` : `ignored: subscription ${sub.id} (${sub.status}) does not replace the current one`;
        }
        await store.recordEvent(tx, event, projectId, outcome, now);
        return { duplicate: false, outcome };
      });
      ctx.invalidatePlan(projectId);
      return done;
    });
  }

  /** Records an event that changes nothing, once. */
  private record(event: Stripe.Event, projectId: string | null, outcome: string): Promise<Processed> {
    return this.ctx.database.transaction(async (tx) => {
      if (await store.eventSeen(tx, event.id)) return { duplicate: true, outcome: "duplicate" };
      await store.recordEvent(tx, event, projectId, outcome, this.ctx.clock.now());
      return { duplicate: false, outcome };
    });
  }
}

type NodeHandler = ReturnType<typeof connectNodeAdapter>;
type Req = Parameters<NodeHandler>[0];
type Res = Parameters<NodeHandler>[1];

function send(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  (res as http.ServerResponse).writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The raw body, or undefined as soon as it is known to be larger than `limit` (the rest is drained). */
function readRaw(req: Req, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = Number(req.headers["content-length"] ?? 0) > limit ? limit + 1 : 0;
    if (size > limit) resolve(undefined);
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else resolve(undefined);
    });
    req.on("end", () => resolve(size <= limit ? Buffer.concat(chunks) : undefined));
    req.on("error", reject);
    req.on("close", () => reject(new Error("the request was aborted")));
  });
}

/** The HTTP side of the webhook route (no CORS: browsers have no business here). */
export async function serveStripeWebhook(webhooks: StripeWebhooks | undefined, req: Req, res: Res): Promise<void> {
  if (req.method !== "POST") return send(res, 405, { error: "use POST" }, { allow: "POST" });
  if (!webhooks) return send(res, 503, { error: "billing is not configured: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET" });
  let raw: Buffer | undefined;
  try {
    raw = await readRaw(req, MAX_WEBHOOK_BYTES);
  } catch {
    return; // the client went away
  }
  if (!raw) return send(res, 413, { error: `the body is larger than ${MAX_WEBHOOK_BYTES} bytes` });
  const signature = req.headers["stripe-signature"];
  const answer = await webhooks.receive(raw, typeof signature === "string" ? signature : undefined);
  send(res, answer.status, answer.body);
}
