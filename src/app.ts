/**
 * The one context object: built from config, it holds the store, the domain
 * services, the identity machinery and the clock. Tests build it with
 * overrides (a manual clock, other plans).
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Accounts } from "./accounts/accounts.js";
import { Sessions } from "./sessions/sessions.js";
import { WalletBindings } from "./wallets/wallet-bindings.js";
import { type DevIssuer, loadDevIssuer } from "./auth/dev-issuer.js";
import { type JwtVerifier, createJwtVerifier } from "./auth/jwt-verifier.js";
import { type Clock, systemClock } from "./clock.js";
import { type Config, usesDevIssuer } from "./config.js";
import { type Database, openDatabase } from "./db/database.js";
import { Billing } from "./billing/billing.js";
import { Agents } from "./catalog/agents.js";
import { Models } from "./catalog/models.js";
import { ApiKeys } from "./keys/api-keys.js";
import { redisInvalidation, redisKeyInvalidation } from "./cluster/key-invalidation.js";
import { Coherence } from "./cluster/state-cache.js";
import { SharedState } from "./cluster/shared-state.js";
import { RedisRateLimiter } from "./limits/redis-rate-limiter.js";
import { LocalRateLimiter, type RateLimiter } from "./limits/rate-limiter.js";
import { type Logger, createLogger } from "./logger.js";
import { type Plans, loadPlans } from "./plans/plans.js";
import { originAllowed } from "./server/cors.js";
import { HealthStatus } from "./server/health.js";
import { serverLatency } from "./server/latency.js";
import { formstateServices } from "./server/services.js";
import { type PriceBook, Usage } from "./usage/usage.js";
import { Marketplace } from "./marketplace/marketplace.js";
import { UsageReports } from "./usage/usage-reports.js";
import { CatalogNamespaces, catalogNamespacesOf } from "./catalog/namespaces.js";
import { X402Rail } from "./x402/x402-topups.js";
import { httpFacilitator } from "./x402/facilitator.js";
import { SpendAlerts } from "./alerts/spend-alerts.js";
import { WebhookSender } from "./alerts/webhook-sender.js";
import { Receipts } from "./receipts/receipts.js";
import { EventHub } from "./events/event-hub.js";
import { creditsAddedEvent, spendAlertFiredEvent } from "./events/account-events.js";
import { loadSigningKey } from "./auth/dev-issuer.js";
import { dirname } from "node:path";
import { type Tracing, otlpTracing } from "./server/tracing.js";

export interface AppOverrides {
  clock?: Clock;
  log?: Logger;
  plans?: Plans;
  limiter?: RateLimiter;
  /** Tracing with other span processors (tests: an in-memory exporter). */
  tracing?: Tracing;
}

/** Every Formstate method by its full path, `/formstate.v1.Svc/Method`. */
function methodIndex(): Map<string, DescMethod> {
  return new Map(formstateServices.flatMap((s) => s.methods.map((m) => [`/${s.typeName}/${m.name}`, m] as const)));
}

/** Prices from the catalog (models and hired agents), for metering. */
function priceBook(models: Models, agents: Agents): PriceBook {
  return {
    modelPrice: (db, projectId, model) => models.priceForUsage(db, projectId, model),
    modelPriceAt: (db, projectId, model, at) => models.priceForUsageAt(db, projectId, model, at),
    agentPrice: (db, projectId, agent, via) => agents.agentForInvocation(db, projectId, agent, via),
    agentPriceAt: (db, projectId, agent, at, via) => agents.agentForInvocationAt(db, projectId, agent, at, via),
    hireStatus: (db, projectId, agent) => agents.hireStatus(db, projectId, agent),
  };
}

/** The group commit's stages as the server-side histograms name them (made once, not per call). */
const COMMIT_STAGES = { queue: "group_commit/queue", transaction: "group_commit/transaction", durable: "group_commit/durable" } as const;

export class App {
  private verifier?: JwtVerifier;
  /** Redis, when REDIS_URL is set: rate limits and key invalidations shared with other instances. */
  sharedState?: SharedState;
  /** x402 top-ups, when a facilitator and pay-to address are configured (issue 18). */
  x402?: X402Rail;
  /** Spend alerts and the sender of their webhooks (issue 18). */
  alerts!: SpendAlerts;
  webhooks!: WebhookSender;
  /** Signed receipts of ledger entries (issue 18). */
  receipts!: Receipts;
  /** Publisher earnings and payouts (issue 18). */
  marketplace!: Marketplace;
  /** Account events for WatchAccountEvents streams, shared across instances through Redis (issue 18). */
  events!: EventHub;
  /** OpenTelemetry spans per call, when an OTLP endpoint is configured (src/server/tracing.ts). */
  tracing?: Tracing;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly clock: Clock,
    readonly database: Database,
    readonly plans: Plans,
    readonly accounts: Accounts,
    readonly apiKeys: ApiKeys,
    readonly limiter: RateLimiter,
    readonly usage: Usage,
    readonly usageReports: UsageReports,
    readonly billing: Billing,
    readonly models: Models,
    readonly agents: Agents,
    readonly health: HealthStatus,
    /** The built-in development issuer; only in development without FORMSTATE_JWKS_URL. */
    readonly devIssuer: DevIssuer | undefined,
    /** Wallet bindings and sign-in sessions (issue 9). */
    readonly wallets: WalletBindings,
    readonly sessions: Sessions,
  ) {}

  static async create(config: Config, overrides: AppOverrides = {}): Promise<App> {
    const log = overrides.log ?? createLogger(config.logLevel);
    const clock = overrides.clock ?? systemClock;
    const plans = overrides.plans ?? loadPlans(config.plansFile);
    // Storage stages are timed into the same server-side histograms as the methods (protocol "internal").
    const database = await openDatabase(config.databaseUrl, {
      poolSize: config.databasePoolSize,
      synchronous: config.sqliteSynchronous,
      observeSync: (ms) => serverLatency.record("sqlite/wal_sync", "internal", ms),
      log,
    });
    // Start-up waits briefly for Redis; unreachable, the instance starts degraded (local limits) and keeps trying.
    const shared = config.redisUrl ? new SharedState(config.redisUrl, config.redisPrefix, log) : undefined;
    await shared?.ready();
    // Exact key and balance caches: commit hooks, SQLite data_version, and Redis across instances (state-cache.ts).
    const coherence = new Coherence(database, log, shared && redisInvalidation(shared, log, "state"));
    let apiKeys: ApiKeys | undefined;
    let agents: Agents | undefined;
    let usage: Usage | undefined;
    const accounts = new Accounts(
      database,
      plans,
      clock,
      {
        activeApiKeys: (db, projectId) => apiKeys!.countLive(db, projectId),
        activeHires: (db, projectId) => agents!.activeHires(db, projectId),
        settleBalance: (projectId) => usage!.returnExpiredHolds(projectId),
        nextHoldExpiry: (projectId) => usage!.nextHoldExpiry(projectId),
      },
      // Member roles and plans: dropped on every instance when they change, like keys and sessions.
      shared && redisInvalidation(shared, log, "accounts"),
      coherence,
    );
    const shares = { maxBps: config.marketplace.shareMaxBps, defaultBps: config.marketplace.shareDefaultBps };
    const models = new Models(database, clock, config.platformProject, shares, new CatalogNamespaces(config.platformProject, catalogNamespacesOf(config)));
    agents = new Agents({ database, clock, plans, models, shares, planOf: (p) => accounts.planOf(p) });
    apiKeys = new ApiKeys({ database, plans, clock, log, methods: methodIndex(), planOf: (p) => accounts.planOf(p), projectEnvironment: (p) => accounts.environmentOf(p), invalidation: shared && redisKeyInvalidation(shared, log), coherence });
    apiKeys.start();
    const devIssuer = usesDevIssuer(config)
      ? await loadDevIssuer({ dataDir: config.dataDir, issuer: config.jwt.issuer!, audience: config.jwt.audience!, now: () => clock.now() })
      : undefined;
    const limiter = overrides.limiter ?? (shared ? new RedisRateLimiter(shared, new LocalRateLimiter(), log) : new LocalRateLimiter());
    const stripeSettings = config.stripe.secretKey && config.stripe.webhookSecret ? { ...config.stripe, secretKey: config.stripe.secretKey, webhookSecret: config.stripe.webhookSecret } : undefined;
    const returnUrlAllowed = (url: string) => URL.canParse(url) && originAllowed(new URL(url).origin, config.corsOrigins);
    const marketplace = new Marketplace({
      database,
      clock,
      log,
      config: config.marketplace,
      publishers: { agent: (db, name, owner) => agents.publisherOf(db, name, owner), model: (db, name) => models.publisherOf(db, name) },
      stripe: stripeSettings,
      returnUrlAllowed,
    });
    let alerts: SpendAlerts | undefined;
    usage = new Usage({ database, plans, clock, log, keys: apiKeys, prices: priceBook(models, agents), planOf: (p) => accounts.planOf(p), marketplace, afterDebit: (p) => alerts?.nudge(p), observeCommit: (stage, ms) => serverLatency.record(COMMIT_STAGES[stage], "internal", ms) });
    usage.start();
    const events = new EventHub(log, shared);
    const billing = new Billing({
      database,
      plans,
      clock,
      log,
      platformProject: config.platformProject,
      selfGrant: config.mode === "development",
      stripe: stripeSettings,
      returnUrlAllowed,
      onConsumerClawback: (tx, c) => marketplace.consumerClawback(tx, c),
      invalidatePlan: (p) => accounts.invalidatePlan(p),
      settleBalance: (p) => usage.returnExpiredHolds(p),
      onCreditsAdded: (row, balance) =>
        events.publish(
          row.project_id,
          creditsAddedEvent({ projectId: row.project_id, transactionId: row.tx_id, amountMicros: BigInt(row.amount_micros), balanceMicros: BigInt(balance), reason: row.description, livemode: row.environment === "live", time: Number(row.create_time) }),
        ),
    });
    billing.start();
    marketplace.start();
    // Sessions and wallet bindings share one invalidation channel; each drops only its own ids.
    const authInvalidation = shared && redisInvalidation(shared, log, "auth");
    const wallets = new WalletBindings({ database, clock, domain: config.walletDomain, invalidation: authInvalidation });
    const sessions = new Sessions({ database, clock, log, planOf: (p) => accounts.planOf(p), invalidation: authInvalidation });
    void authInvalidation?.subscribe((ids) => {
      sessions.drop(ids);
      wallets.drop(ids);
    });
    const app = new App(config, log, clock, database, plans, accounts, apiKeys, limiter, usage, new UsageReports(database, clock, (p) => usage.returnExpiredHolds(p)), billing, models, agents, new HealthStatus(), devIssuer, wallets, sessions);
    app.sharedState = shared;
    app.events = events;
    app.receipts = new Receipts({ database, clock, key: await loadSigningKey(config.receiptKeyFile, dirname(config.receiptKeyFile)) });
    app.alerts = alerts = new SpendAlerts({ database, clock, log, allowHttp: config.mode === "development", intervalMs: config.alerts.checkIntervalMs, afterDebitMs: config.alerts.checkAfterDebitMs, onFired: (f) => events.publish(f.rule.project_id, spendAlertFiredEvent(f)) });
    app.alerts.start();
    app.webhooks = new WebhookSender({ database, clock, log, intervalMs: config.alerts.sendIntervalMs, backoffMs: config.alerts.backoffMs, backoffMaxMs: config.alerts.backoffMaxMs, maxAttempts: config.alerts.maxAttempts, timeoutMs: config.alerts.timeoutMs });
    app.webhooks.start();
    if (config.x402) app.x402 = new X402Rail({ database, clock, log, config: config.x402, facilitator: httpFacilitator(config.x402.facilitatorUrl, config.x402.facilitatorTimeoutMs) });
    app.marketplace = marketplace;
    app.tracing = overrides.tracing ?? (config.otlpTracesUrl ? otlpTracing(config.otlpTracesUrl) : undefined);
    return app;
  }

  /** The JWT verifier: the IdP's remote JWKS, or the dev issuer's keys in development. */
  jwt(): JwtVerifier {
    if (!this.verifier) {
      const { jwt } = this.config;
      this.verifier = createJwtVerifier({
        jwksUrl: jwt.jwksUrl,
        jwks: this.devIssuer?.jwks(),
        issuer: jwt.issuer,
        audience: jwt.audience,
        algorithms: jwt.algorithms,
        clockToleranceSec: jwt.clockToleranceSec,
        projectClaim: jwt.projectClaim,
        roleClaim: jwt.roleClaim,
        now: () => this.clock.now(),
      });
    }
    return this.verifier;
  }

  async close(): Promise<void> {
    this.usage.stop();
    await this.alerts.stop();
    await this.webhooks.stop();
    await this.marketplace.stop();
    await this.billing.stop();
    await this.apiKeys.stop();
    await this.tracing?.shutdown();
    await this.database.close();
    await this.sharedState?.close();
  }
}
