/**
 * A local Stripe API for tests: just the endpoints Formstate's billing calls
 * through the real `stripe` SDK (customers, Checkout sessions, portal
 * sessions, subscriptions, charges and disputes, meter events), form-encoded requests as the SDK
 * sends them, Stripe-shaped JSON and errors, and idempotency-key replay.
 * Tests drive it from the outside: mark a session paid, change a
 * subscription, refund or dispute a charge, make meter events fail with 500 or hang, read every meter
 * identifier it was sent and accepted.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";

export const FAKE_SECRET_KEY = "sk_test_fake_formstate";
export const FAKE_WEBHOOK_SECRET = "whsec_fake_formstate";
export const PRICE_PRO = "price_pro_test";
export const PRICE_ENTERPRISE = "price_enterprise_test";
export const METER_EVENT = "formstate_usage_test";
const DAY_SEC = 86_400;

type Obj = Record<string, unknown>;
export type MeterMode = "ok" | "fail500" | "hang";
/** How the fake answers transfers: ok; fail500 (an outage); refuse (400, e.g. an account without the capability); lostAnswer (creates it, but the answer is lost: 500). */
export type TransferMode = "ok" | "fail500" | "refuse" | "lostAnswer";
export interface MeterAttempt {
  identifier: string;
  outcome: "accepted" | "failed" | "hung" | "replayed";
}
export interface AcceptedMeterEvent {
  count: number;
  eventName: string;
  customer: string;
  value: string;
  timestamp: number;
}

/** `a[b][0][c]=v` form fields as nested objects and arrays (what the SDK's qs encoding produces). */
export function parseForm(body: string): Obj {
  const root: Obj = {};
  for (const [key, value] of new URLSearchParams(body)) {
    const path = key.split(/[[\]]+/).filter(Boolean);
    let node: Obj = root;
    path.forEach((part, i) => {
      if (i === path.length - 1) {
        node[part] = value;
        return;
      }
      node[part] ??= /^\d+$/.test(path[i + 1]) ? [] : {};
      node = node[part] as Obj;
    });
  }
  return root;
}

const id = (prefix: string) => `${prefix}_${randomBytes(9).toString("hex")}`;
const nowSec = () => Math.floor(Date.now() / 1000);

export class FakeStripe {
  readonly customers = new Map<string, Obj>();
  readonly sessions = new Map<string, Obj>();
  readonly subscriptions = new Map<string, Obj>();
  readonly charges = new Map<string, Obj>();
  readonly disputes = new Map<string, Obj>();
  readonly meterAttempts: MeterAttempt[] = [];
  readonly accepted = new Map<string, AcceptedMeterEvent>();
  /** Every request as `METHOD /path`. */
  readonly requests: string[] = [];
  meterMode: MeterMode = "ok";
  /** Stripe Connect: connected accounts, onboarding links, transfers (by id) and every transfer attempt. */
  readonly accounts = new Map<string, Obj>();
  readonly accountLinks: Obj[] = [];
  readonly transfers = new Map<string, Obj>();
  readonly transferAttempts: Array<{ idempotencyKey: string; outcome: "created" | "replayed" | "failed" | "refused" | "lost" }> = [];
  transferMode: TransferMode = "ok";
  /** Fail every other endpoint with 500 (an outage). */
  apiDown = false;
  private readonly replays = new Map<string, { status: number; body: unknown }>();
  private readonly lineItems = new Map<string, Obj[]>();
  private readonly subscriptionData = new Map<string, Obj>();
  private server!: http.Server;
  port = 0;

  static async start(): Promise<FakeStripe> {
    const fake = new FakeStripe();
    fake.server = http.createServer((req, res) => fake.handle(req, res));
    await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  /** The environment that points Formstate at this fake. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      STRIPE_SECRET_KEY: FAKE_SECRET_KEY,
      STRIPE_WEBHOOK_SECRET: FAKE_WEBHOOK_SECRET,
      STRIPE_API_HOST: "127.0.0.1",
      STRIPE_API_PORT: String(this.port),
      STRIPE_API_PROTOCOL: "http",
      STRIPE_PRICE_PRO: PRICE_PRO,
      STRIPE_PRICE_ENTERPRISE: PRICE_ENTERPRISE,
      STRIPE_METER_EVENT_NAME: METER_EVENT,
      ...extra,
    };
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The customer pays: the session completes; a subscription session gets an active subscription. */
  completeSession(sessionId: string): { session: Obj; subscription?: Obj; charge?: Obj } {
    const session = this.sessions.get(sessionId);
    if (!session) throw new Error(`fake Stripe: no session ${sessionId}`);
    Object.assign(session, { status: "complete", payment_status: "paid" });
    if (session.mode !== "subscription") {
      // A one-off payment: a PaymentIntent and its Charge, which refunds and disputes are about.
      const charge: Obj = { id: id("ch"), object: "charge", amount: session.amount_total, amount_refunded: 0, refunded: false, disputed: false, currency: "usd", customer: session.customer, payment_intent: id("pi"), created: nowSec() };
      this.charges.set(String(charge.id), charge);
      session.payment_intent = charge.payment_intent;
      return { session, charge };
    }
    const price = String(this.lineItems.get(sessionId)![0].price);
    const subscription = this.createSubscription(String(session.customer), price, (this.subscriptionData.get(sessionId)?.metadata as Obj) ?? {});
    session.subscription = subscription.id;
    return { session, subscription };
  }

  /** A subscription as Stripe would hold it (also for tests that need one without Checkout). */
  createSubscription(customer: string, price: string, metadata: Obj = {}, status = "active"): Obj {
    const start = nowSec();
    const sub: Obj = {
      id: id("sub"),
      object: "subscription",
      customer,
      status,
      cancel_at_period_end: false,
      metadata,
      created: start,
      items: { object: "list", data: [{ id: id("si"), object: "subscription_item", price: { id: price, object: "price" }, current_period_start: start, current_period_end: start + 30 * DAY_SEC }] },
    };
    this.subscriptions.set(String(sub.id), sub);
    return sub;
  }

  /** Changes a subscription as the portal or a failed renewal would. */
  updateSubscription(subId: string, patch: { status?: string; price?: string; cancelAtPeriodEnd?: boolean }): Obj {
    const sub = this.subscriptions.get(subId)!;
    if (patch.status) sub.status = patch.status;
    if (patch.cancelAtPeriodEnd !== undefined) sub.cancel_at_period_end = patch.cancelAtPeriodEnd;
    if (patch.price) ((sub.items as { data: Obj[] }).data[0].price as Obj).id = patch.price;
    return structuredClone(sub);
  }

  /** Refunds `cents` more of a charge (as the Dashboard or API would); returns the charge. */
  refund(chargeId: string, cents: number): Obj {
    const charge = this.charges.get(chargeId)!;
    charge.amount_refunded = Math.min(Number(charge.amount), Number(charge.amount_refunded) + cents);
    charge.refunded = charge.amount_refunded === charge.amount;
    return structuredClone(charge);
  }

  /** The cardholder disputes `cents` of a charge (default all of it); returns the dispute. */
  dispute(chargeId: string, cents?: number): Obj {
    const charge = this.charges.get(chargeId)!;
    const dispute: Obj = { id: id("dp"), object: "dispute", charge: chargeId, amount: cents ?? charge.amount, currency: "usd", status: "needs_response", reason: "fraudulent", created: nowSec() };
    this.disputes.set(String(dispute.id), dispute);
    charge.disputed = true;
    return structuredClone(dispute);
  }

  /** A dispute ends: `won` (the money comes back), `lost`, or `warning_closed` (an inquiry closed). */
  closeDispute(disputeId: string, status: "won" | "lost" | "warning_closed"): Obj {
    const dispute = this.disputes.get(disputeId)!;
    dispute.status = status;
    return structuredClone(dispute);
  }

  /** A Stripe event envelope around an object. */
  event(type: string, object: Obj): Obj {
    return { id: id("evt"), object: "event", api_version: Stripe.API_VERSION, created: nowSec(), livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, type, data: { object: structuredClone(object) } };
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const [path, query = ""] = (req.url ?? "/").split("?");
      this.requests.push(`${req.method} ${path}`);
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json", "request-id": id("req") });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization !== `Bearer ${FAKE_SECRET_KEY}`) {
        return reply(401, { error: { type: "invalid_request_error", message: "Invalid API Key provided" } });
      }
      const key = req.method === "POST" && typeof req.headers["idempotency-key"] === "string" ? `${path} ${req.headers["idempotency-key"]}` : undefined;
      const replay = key ? this.replays.get(key) : undefined;
      const form = parseForm(req.method === "GET" ? query : Buffer.concat(chunks).toString("utf8"));
      if (path === "/v1/billing/meter_events" && req.method === "POST") {
        const identifier = String(form.identifier);
        if (replay) {
          this.meterAttempts.push({ identifier, outcome: "replayed" });
          return reply(replay.status, replay.body);
        }
        if (this.meterMode === "hang") {
          this.meterAttempts.push({ identifier, outcome: "hung" });
          return; // never answers: the SDK times out
        }
        if (this.meterMode === "fail500") {
          this.meterAttempts.push({ identifier, outcome: "failed" });
          return reply(500, { error: { type: "api_error", message: "fake Stripe outage" } });
        }
      } else if (path === "/v1/transfers" && req.method === "POST") {
        const idem = String(req.headers["idempotency-key"] ?? "");
        if (replay) {
          this.transferAttempts.push({ idempotencyKey: idem, outcome: "replayed" });
          return reply(replay.status, replay.body);
        }
        if (this.transferMode === "fail500" || this.apiDown) {
          this.transferAttempts.push({ idempotencyKey: idem, outcome: "failed" });
          return reply(500, { error: { type: "api_error", message: "fake Stripe outage" } });
        }
        if (this.transferMode === "refuse") {
          this.transferAttempts.push({ idempotencyKey: idem, outcome: "refused" });
          return reply(400, { error: { type: "invalid_request_error", code: "insufficient_capabilities_for_transfer", message: "the destination account cannot receive transfers" } });
        }
        const [status, body] = this.route("POST", path, form);
        if (key && status < 500) this.replays.set(key, { status, body });
        if (this.transferMode === "lostAnswer") {
          this.transferAttempts.push({ idempotencyKey: idem, outcome: "lost" });
          return reply(500, { error: { type: "api_error", message: "fake Stripe: the answer was lost" } });
        }
        this.transferAttempts.push({ idempotencyKey: idem, outcome: "created" });
        return reply(status, body);
      } else if (this.apiDown) {
        return reply(500, { error: { type: "api_error", message: "fake Stripe outage" } });
      } else if (replay) {
        return reply(replay.status, replay.body);
      }
      const [status, body] = this.route(req.method ?? "GET", path, form);
      if (key && status < 500) this.replays.set(key, { status, body });
      reply(status, body);
    });
  }

  private route(method: string, path: string, form: Obj): [number, unknown] {
    const missing = (kind: string, objectId: string): [number, unknown] => [404, { error: { type: "invalid_request_error", code: "resource_missing", param: "id", message: `No such ${kind}: '${objectId}'` } }];
    let m: RegExpExecArray | null;
    if (method === "POST" && path === "/v1/customers") {
      const customer = { id: id("cus"), object: "customer", name: form.name ?? null, email: form.email ?? null, metadata: form.metadata ?? {}, created: nowSec() };
      this.customers.set(customer.id, customer);
      return [200, customer];
    }
    if (method === "GET" && (m = /^\/v1\/customers\/([^/]+)$/.exec(path))) {
      return this.customers.has(m[1]) ? [200, this.customers.get(m[1])] : missing("customer", m[1]);
    }
    if (method === "POST" && path === "/v1/checkout/sessions") {
      const sessionId = id("cs_test");
      const items = (form.line_items as Obj[]) ?? [];
      const amount = items.reduce((sum, li) => sum + Number((li.price_data as Obj | undefined)?.unit_amount ?? 4900) * Number(li.quantity ?? 1), 0);
      const session: Obj = {
        id: sessionId,
        object: "checkout.session",
        mode: form.mode,
        customer: form.customer ?? null,
        client_reference_id: form.client_reference_id ?? null,
        metadata: form.metadata ?? {},
        status: "open",
        payment_status: "unpaid",
        amount_total: amount,
        currency: "usd",
        subscription: null,
        success_url: form.success_url,
        cancel_url: form.cancel_url,
        expires_at: nowSec() + DAY_SEC,
        url: `${this.url}/pay/${sessionId}`,
      };
      this.sessions.set(sessionId, session);
      this.lineItems.set(sessionId, items);
      if (form.subscription_data) this.subscriptionData.set(sessionId, form.subscription_data as Obj);
      return [200, session];
    }
    if (method === "GET" && (m = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(path))) {
      return this.sessions.has(m[1]) ? [200, this.sessions.get(m[1])] : missing("checkout.session", m[1]);
    }
    if (method === "POST" && path === "/v1/billing_portal/sessions") {
      if (!this.customers.has(String(form.customer))) return missing("customer", String(form.customer));
      const portalId = id("bps");
      return [200, { id: portalId, object: "billing_portal.session", customer: form.customer, return_url: form.return_url, url: `${this.url}/portal/${portalId}` }];
    }
    if (method === "GET" && (m = /^\/v1\/charges\/([^/]+)$/.exec(path))) {
      return this.charges.has(m[1]) ? [200, this.charges.get(m[1])] : missing("charge", m[1]);
    }
    if (method === "GET" && (m = /^\/v1\/disputes\/([^/]+)$/.exec(path))) {
      return this.disputes.has(m[1]) ? [200, this.disputes.get(m[1])] : missing("dispute", m[1]);
    }
    if (method === "GET" && path === "/v1/disputes") {
      const data = [...this.disputes.values()].filter((d) => !form.charge || d.charge === form.charge);
      return [200, { object: "list", url: "/v1/disputes", has_more: false, data }];
    }
    if (method === "GET" && (m = /^\/v1\/subscriptions\/([^/]+)$/.exec(path))) {
      return this.subscriptions.has(m[1]) ? [200, this.subscriptions.get(m[1])] : missing("subscription", m[1]);
    }
    if (method === "POST" && path === "/v1/accounts") {
      const account: Obj = { id: id("acct"), object: "account", type: form.type ?? "express", metadata: form.metadata ?? {}, capabilities: { transfers: "inactive" }, details_submitted: false, payouts_enabled: false, created: nowSec() };
      this.accounts.set(String(account.id), account);
      return [200, account];
    }
    if (method === "GET" && (m = /^\/v1\/accounts\/([^/]+)$/.exec(path))) {
      return this.accounts.has(m[1]) ? [200, this.accounts.get(m[1])] : missing("account", m[1]);
    }
    if (method === "POST" && path === "/v1/account_links") {
      if (!this.accounts.has(String(form.account))) return missing("account", String(form.account));
      const link: Obj = { object: "account_link", created: nowSec(), expires_at: nowSec() + 300, url: `${this.url}/connect/onboarding/${String(form.account)}/${id("al")}`, account: form.account, refresh_url: form.refresh_url, return_url: form.return_url, type: form.type };
      this.accountLinks.push(link);
      return [200, link];
    }
    if (method === "POST" && path === "/v1/transfers") {
      if (!this.accounts.has(String(form.destination))) return missing("account", String(form.destination));
      const transfer: Obj = { id: id("tr"), object: "transfer", amount: Number(form.amount), currency: form.currency, destination: form.destination, transfer_group: form.transfer_group ?? null, metadata: form.metadata ?? {}, reversed: false, created: nowSec() };
      this.transfers.set(String(transfer.id), transfer);
      return [200, transfer];
    }
    if (method === "POST" && path === "/v1/billing/meter_events") {
      const identifier = String(form.identifier);
      if (form.event_name !== METER_EVENT) {
        this.meterAttempts.push({ identifier, outcome: "failed" });
        return [400, { error: { type: "invalid_request_error", param: "event_name", message: `No active meter found for event_name ${String(form.event_name)}` } }];
      }
      const payload = form.payload as Obj;
      const seen = this.accepted.get(identifier);
      const entry = { count: (seen?.count ?? 0) + 1, eventName: String(form.event_name), customer: String(payload.stripe_customer_id), value: String(payload.value), timestamp: Number(form.timestamp) };
      this.accepted.set(identifier, entry);
      this.meterAttempts.push({ identifier, outcome: "accepted" });
      return [200, { object: "billing.meter_event", event_name: form.event_name, identifier, payload, timestamp: Number(form.timestamp), created: nowSec(), livemode: false }];
    }
    return [404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path})` } }];
  }
}

const signer = new Stripe(FAKE_SECRET_KEY);

/** A `Stripe-Signature` header for a payload, as Stripe signs it (timestamp in seconds). */
export function signatureFor(payload: string, opts: { secret?: string; timestamp?: number } = {}): string {
  return signer.webhooks.generateTestHeaderString({ payload, secret: opts.secret ?? FAKE_WEBHOOK_SECRET, timestamp: opts.timestamp });
}

/** Delivers a webhook to a Formstate server; returns the HTTP status and JSON body. */
export async function deliver(baseUrl: string, payload: string, signature?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${baseUrl}/webhooks/stripe`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(signature === undefined ? {} : { "stripe-signature": signature }), ...headers },
    body: payload,
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Signs and delivers an event. */
export function deliverEvent(baseUrl: string, event: Obj): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = JSON.stringify(event);
  return deliver(baseUrl, payload, signatureFor(payload));
}
