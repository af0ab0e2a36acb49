/**
 * Environment -> typed, validated configuration. Every bad variable is
 * collected and reported at once, so an operator fixes them in one go.
 */
import { resolve } from "node:path";
import { parseCatalogNamespaces } from "./catalog/namespaces.js";
import { type X402Config, readX402Config } from "./x402/x402-config.js";
import { type AlertConfig, readAlertConfig } from "./alerts/alert-config.js";
import { envReader } from "./config-env.js";

export type Mode = "development" | "production";

/** The JWT identity provider Formstate trusts. */
export interface JwtConfig {
  /** The IdP's JWKS. Unset in development: the built-in dev issuer is used. */
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  algorithms: string[];
  projectClaim: string;
  roleClaim: string;
  clockToleranceSec: number;
}

export interface Config {
  mode: Mode;
  host: string;
  port: number;
  databaseUrl: string;
  dataDir: string;
  jwt: JwtConfig;
  /** Allowed browser origins; `localhost` allows any http(s)://localhost or 127.0.0.1 origin. */
  corsOrigins: string[];
  redisUrl?: string;
  /** Prefix of every Redis key and channel, so several deployments (or test servers) can share one Redis. */
  redisPrefix: string;
  /** Connections per instance to PostgreSQL. */
  databasePoolSize: number;
  /** SQLite's `synchronous` pragma: FULL (acknowledged writes survive power loss) or NORMAL (only a process crash). */
  sqliteSynchronous: "full" | "normal";
  stripe: StripeConfig;
  logLevel: string;
  tls?: { certFile: string; keyFile: string };
  /** Largest request or response message, bytes. */
  maxMessageBytes: number;
  /** Longest deadline a client may ask for, ms; calls without one get it too. */
  maxTimeoutMs: number;
  /** Calls without credentials (public methods), per client IP; 0 rps turns it off. */
  anonymousRateLimit: { requestsPerSecond: number; burst: number };
  /** How long shutdown waits for in-flight calls before closing connections, ms. */
  shutdownGraceMs: number;
  /** The demo project seeded in development. */
  devProject: string;
  /** A JSON file replacing the default plans. */
  plansFile?: string;
  /** The project whose admins and developers operate the platform (platform models, credit grants). */
  platformProject: string;
  /** Provider namespaces assigned to verified owners (FORMSTATE_CATALOG_NAMESPACES, namespace=project,...). */
  catalogNamespaces: Map<string, string>;
  /** The domain named in wallet-binding (Sign-In-With-Ethereum) messages. */
  walletDomain: string;
  /** Serve the browser console at /console/ (built with esbuild on first request). */
  console: boolean;
  /** x402 top-ups (issue 18); undefined = off. */
  x402?: X402Config;
  /** Spend alerts and their webhooks (issue 18). */
  alerts: AlertConfig;
  /** The key receipts are signed with (created on first use); FORMSTATE_RECEIPT_KEY_FILE, default in the data directory. */
  receiptKeyFile: string;
  /** The server's public origin (FORMSTATE_PUBLIC_URL) for URLs it hands out; unset = the origin a caller used. */
  publicUrl?: string;
  /**
   * Where OpenTelemetry spans go (OTLP/HTTP traces URL): FORMSTATE_OTLP_ENDPOINT
   * or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, or OTEL_EXPORTER_OTLP_ENDPOINT
   * plus `/v1/traces`; unset = tracing off.
   */
  otlpTracesUrl?: string;
  /** Revenue share and payouts of publishers (docs/marketplace.md). */
  marketplace: MarketplaceConfig;
}

/** The marketplace's economics: publisher shares and the payout schedule. */
export interface MarketplaceConfig {
  /** The most a publisher's share may be, basis points (FORMSTATE_PUBLISHER_SHARE_MAX_BPS). */
  shareMaxBps: number;
  /** The share of a model or agent published without one (FORMSTATE_PUBLISHER_SHARE_DEFAULT_BPS). */
  shareDefaultBps: number;
  /** Earnings below this are carried to a later payout, micro-USD. */
  payoutThresholdMicros: number;
  /** One payout per publisher per period of this length, ms. */
  payoutIntervalMs: number;
  /** How often the payout sender looks for work, ms. */
  payoutTickMs: number;
  /** First retry delay of a failed transfer, ms; doubles per failure up to payoutBackoffMaxMs. */
  payoutBackoffMs: number;
  payoutBackoffMaxMs: number;
}

/** Stripe billing. Without a secret key the Stripe methods answer FAILED_PRECONDITION. */
export interface StripeConfig {
  secretKey?: string;
  /** The webhook endpoint's signing secret (`whsec_...`); required with the secret key. */
  webhookSecret?: string;
  /** Another Stripe API address (a local fake in tests); unset = Stripe's own. */
  apiHost?: string;
  apiPort?: number;
  apiProtocol?: "http" | "https";
  /** Timeout of one Stripe API request, ms. */
  timeoutMs: number;
  /** The Stripe price Checkout sells for each paid plan; a plan without one is not sold. */
  prices: { pro?: string; enterprise?: string };
  /** The `event_name` of the Stripe meter usage is reported to (value: micro-USD). */
  meterEventName: string;
  /** How often the meter sender looks for usage to report, ms. */
  meterIntervalMs: number;
  /** First retry delay after a failed report, ms; it doubles per failure up to meterBackoffMaxMs. */
  meterBackoffMs: number;
  meterBackoffMaxMs: number;
}

/** Start-up stops with this error; its message names every bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const DEV_ISSUER = "formstate-dev";
const DEV_AUDIENCE = "formstate";
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const ALLOWED_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

/** What a caller of loadConfig needs configured. */
export interface LoadConfigOptions {
  /**
   * false for commands that only open the database (the CLI's keys, credits,
   * accounts, migrate): production's FORMSTATE_JWKS_URL, _JWT_ISSUER and
   * _JWT_AUDIENCE are then not demanded, since nothing verifies a token.
   * Default true.
   */
  requireIdentityProvider?: boolean;
}

/** Reads and validates the configuration from environment variables. */
/** The OpenTelemetry convention: a base endpoint's traces live at `/v1/traces`. */
const otlpBase = (base: string | undefined) => (base ? `${base.replace(/\/+$/, "")}/v1/traces` : undefined);

export function loadConfig(env: NodeJS.ProcessEnv = process.env, options: LoadConfigOptions = {}): Config {
  const problems: string[] = [];
  const { str, int } = envReader(env, problems);
  const url = (name: string, protocols: string[]) => {
    const raw = str(name);
    if (raw === undefined) return undefined;
    try {
      const u = new URL(raw);
      if (!protocols.includes(u.protocol)) throw new Error();
      return raw;
    } catch {
      problems.push(`${name} must be a ${protocols.join(" or ")} URL`);
      return undefined;
    }
  };

  const envName = str("FORMSTATE_ENV");
  if (envName !== undefined && envName !== "development" && envName !== "production") {
    problems.push(`FORMSTATE_ENV=${JSON.stringify(envName)} must be development or production`);
  }
  const mode: Mode = envName === "production" || env.NODE_ENV === "production" ? "production" : "development";

  const dataDir = resolve(str("FORMSTATE_DATA_DIR") ?? "./data");
  const databaseUrl = str("DATABASE_URL") ?? resolve(dataDir, "formstate.db");
  if (/^[a-z]+:\/\//.test(databaseUrl) && !/^postgres(ql)?:\/\//.test(databaseUrl) && !databaseUrl.startsWith("file:")) {
    problems.push("DATABASE_URL must be a SQLite file path, file: URL, :memory:, or postgres:// URL");
  }

  const algorithms = (str("FORMSTATE_JWT_ALGORITHMS") ?? "RS256,ES256,EdDSA").split(",").map((a) => a.trim());
  const badAlgs = algorithms.filter((a) => !ALLOWED_ALGS.includes(a));
  if (badAlgs.length) {
    problems.push(`FORMSTATE_JWT_ALGORITHMS has ${badAlgs.join(", ")}; allowed: ${ALLOWED_ALGS.join(", ")} (never none or HMAC)`);
  }

  const jwksUrl = url("FORMSTATE_JWKS_URL", ["https:", "http:"]);
  let issuer = str("FORMSTATE_JWT_ISSUER");
  let audience = str("FORMSTATE_JWT_AUDIENCE");
  if (mode === "production") {
    if (options.requireIdentityProvider !== false) {
      if (!str("FORMSTATE_JWKS_URL")) problems.push("FORMSTATE_JWKS_URL is required in production");
      if (!issuer) problems.push("FORMSTATE_JWT_ISSUER is required in production");
      if (!audience) problems.push("FORMSTATE_JWT_AUDIENCE is required in production");
    }
  } else if (!jwksUrl) {
    issuer ??= DEV_ISSUER;
    audience ??= DEV_AUDIENCE;
  }

  const logLevel = str("LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL=${JSON.stringify(logLevel)} must be one of ${LOG_LEVELS.join(", ")}`);

  const certFile = str("FORMSTATE_TLS_CERT");
  const keyFile = str("FORMSTATE_TLS_KEY");
  if (Boolean(certFile) !== Boolean(keyFile)) problems.push("FORMSTATE_TLS_CERT and FORMSTATE_TLS_KEY must be set together");

  const corsRaw = str("FORMSTATE_CORS_ORIGINS");
  const corsOrigins = corsRaw ? corsRaw.split(",").map((o) => o.trim()).filter(Boolean) : mode === "development" ? ["localhost"] : [];
  for (const o of corsOrigins) {
    if (o === "localhost" || o === "*") continue;
    try {
      if (new URL(o).origin !== o) throw new Error();
    } catch {
      problems.push(`FORMSTATE_CORS_ORIGINS entry ${JSON.stringify(o)} must be an origin such as https://app.example.com`);
    }
  }

  // The console is a development convenience; production serves it only when asked (or from a static host).
  const consoleRaw = str("FORMSTATE_CONSOLE");
  if (consoleRaw !== undefined && consoleRaw !== "on" && consoleRaw !== "off") problems.push("FORMSTATE_CONSOLE must be on or off");
  const consoleOn = consoleRaw === undefined ? mode === "development" : consoleRaw === "on";
  const platformProject = str("FORMSTATE_PLATFORM_PROJECT") ?? "platform";
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(platformProject)) problems.push("FORMSTATE_PLATFORM_PROJECT must match [a-z0-9][a-z0-9-]{0,62}");
  const catalogNamespaces = parseCatalogNamespaces(str("FORMSTATE_CATALOG_NAMESPACES"));
  problems.push(...catalogNamespaces.problems);
  const devProject = str("FORMSTATE_DEV_PROJECT") ?? "demo";
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(devProject)) problems.push("FORMSTATE_DEV_PROJECT must match [a-z0-9][a-z0-9-]{0,62}");

  const syncRaw = (str("FORMSTATE_SQLITE_SYNCHRONOUS") ?? "full").toLowerCase();
  if (syncRaw !== "full" && syncRaw !== "normal") problems.push("FORMSTATE_SQLITE_SYNCHRONOUS must be full or normal");

  const stripeSecretKey = str("STRIPE_SECRET_KEY");
  const stripeWebhookSecret = str("STRIPE_WEBHOOK_SECRET");
  if (Boolean(stripeSecretKey) !== Boolean(stripeWebhookSecret)) problems.push("STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET must be set together");
  const stripeProtocol = str("STRIPE_API_PROTOCOL");
  if (stripeProtocol !== undefined && stripeProtocol !== "http" && stripeProtocol !== "https") problems.push("STRIPE_API_PROTOCOL must be http or https");
  const stripePrice = (name: string) => {
    const v = str(name);
    if (v !== undefined && !/^price_[A-Za-z0-9_]+$/.test(v)) problems.push(`${name} must be a Stripe price id (price_...)`);
    return v;
  };
  const meterEventName = str("STRIPE_METER_EVENT_NAME") ?? "formstate_usage";
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(meterEventName)) problems.push("STRIPE_METER_EVENT_NAME must be 1 to 100 letters, digits, _ . or -");

  const shareMaxBps = int("FORMSTATE_PUBLISHER_SHARE_MAX_BPS", 8000, 0, 10_000);
  const shareDefaultBps = int("FORMSTATE_PUBLISHER_SHARE_DEFAULT_BPS", Math.min(7000, shareMaxBps), 0, 10_000);
  if (shareDefaultBps > shareMaxBps) problems.push("FORMSTATE_PUBLISHER_SHARE_DEFAULT_BPS must not exceed FORMSTATE_PUBLISHER_SHARE_MAX_BPS");

  const config: Config = {
    mode,
    host: str("HOST") ?? "0.0.0.0",
    port: int("PORT", 8080, 0, 65535),
    databaseUrl,
    dataDir,
    jwt: {
      jwksUrl,
      issuer,
      audience,
      algorithms,
      projectClaim: str("FORMSTATE_JWT_PROJECT_CLAIM") ?? "project_id",
      roleClaim: str("FORMSTATE_JWT_ROLE_CLAIM") ?? "role",
      clockToleranceSec: int("FORMSTATE_JWT_CLOCK_TOLERANCE_SEC", 30, 0, 300),
    },
    corsOrigins,
    redisUrl: url("REDIS_URL", ["redis:", "rediss:"]),
    redisPrefix: str("FORMSTATE_REDIS_PREFIX") ?? "formstate:",
    databasePoolSize: int("FORMSTATE_DB_POOL_SIZE", 10, 1, 1000),
    sqliteSynchronous: syncRaw === "normal" ? "normal" : "full",
    stripe: {
      secretKey: stripeSecretKey,
      webhookSecret: stripeWebhookSecret,
      apiHost: str("STRIPE_API_HOST"),
      apiPort: str("STRIPE_API_PORT") === undefined ? undefined : int("STRIPE_API_PORT", 443, 1, 65535),
      apiProtocol: stripeProtocol as StripeConfig["apiProtocol"],
      timeoutMs: int("STRIPE_API_TIMEOUT_MS", 20_000, 100, 120_000),
      prices: { pro: stripePrice("STRIPE_PRICE_PRO"), enterprise: stripePrice("STRIPE_PRICE_ENTERPRISE") },
      meterEventName,
      meterIntervalMs: int("STRIPE_METER_INTERVAL_MS", 2_000, 10, 600_000),
      meterBackoffMs: int("STRIPE_METER_BACKOFF_MS", 1_000, 10, 600_000),
      meterBackoffMaxMs: int("STRIPE_METER_BACKOFF_MAX_MS", 300_000, 10, 86_400_000),
    },
    logLevel,
    tls: certFile && keyFile ? { certFile, keyFile } : undefined,
    maxMessageBytes: int("FORMSTATE_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    maxTimeoutMs: int("FORMSTATE_MAX_TIMEOUT_MS", 60_000, 100, 3_600_000),
    anonymousRateLimit: { requestsPerSecond: int("FORMSTATE_ANON_RATE_LIMIT_RPS", 50, 0, 1_000_000), burst: int("FORMSTATE_ANON_RATE_LIMIT_BURST", 100, 1, 1_000_000) },
    shutdownGraceMs: int("FORMSTATE_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    devProject,
    plansFile: str("FORMSTATE_PLANS_FILE"),
    platformProject,
    catalogNamespaces: catalogNamespaces.assigned,
    walletDomain: str("FORMSTATE_WALLET_DOMAIN") ?? "localhost",
    console: consoleOn,
    x402: readX402Config(env, problems),
    alerts: readAlertConfig(env, problems),
    publicUrl: str("FORMSTATE_PUBLIC_URL")?.replace(/\/+$/, ""),
    otlpTracesUrl: str("FORMSTATE_OTLP_ENDPOINT") ?? str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? otlpBase(str("OTEL_EXPORTER_OTLP_ENDPOINT")),
    receiptKeyFile: resolve(str("FORMSTATE_RECEIPT_KEY_FILE") ?? resolve(dataDir, "receipt-signing-key.json")),
    marketplace: {
      shareMaxBps,
      shareDefaultBps,
      payoutThresholdMicros: int("FORMSTATE_PAYOUT_THRESHOLD_MICROS", 10_000_000, 10_000, Number.MAX_SAFE_INTEGER),
      payoutIntervalMs: int("FORMSTATE_PAYOUT_INTERVAL_MS", 86_400_000, 1_000, 90 * 86_400_000),
      payoutTickMs: int("FORMSTATE_PAYOUT_TICK_MS", 5_000, 10, 600_000),
      payoutBackoffMs: int("FORMSTATE_PAYOUT_BACKOFF_MS", 5_000, 10, 3_600_000),
      payoutBackoffMaxMs: int("FORMSTATE_PAYOUT_BACKOFF_MAX_MS", 3_600_000, 10, 86_400_000),
    },
  };
  if (problems.length) throw new ConfigError(problems);
  return config;
}

/** True when the built-in development issuer signs the tokens. */
export function usesDevIssuer(config: Config): boolean {
  return config.mode === "development" && !config.jwt.jwksUrl;
}
