/**
 * Puts the app on the port: Connect's handler for gRPC, gRPC-Web and Connect
 * (with the interceptor chain), CORS, and the plain HTTP routes.
 */
import type http from "node:http";
import type { App } from "../app.js";
import { type AuthenticateDeps, credentialOf, createAuthenticateInterceptor, resolve } from "../auth/authenticate.js";
import { createX402OfferInterceptor } from "../x402/x402-offer-interceptor.js";
import { isTopUpPath, serveTopUp } from "../x402/x402-route.js";
import { RECEIPT_JWKS_PATH } from "../receipts/receipt-chain.js";
import { createAuthorizeInterceptor } from "../auth/authorize.js";
import { createTenancyInterceptor } from "../auth/tenancy.js";
import { STRIPE_WEBHOOK_PATH, serveStripeWebhook } from "../billing/webhooks.js";
import { createWalletAuthenticator } from "../wallets/wallet-authenticator.js";
import { createRateLimitInterceptor } from "../limits/rate-limit-interceptor.js";
import { requestContextValues } from "./client-ip.js";
import { applyCors } from "./cors.js";
import { type GuardedAdapterOptions, guardedConnectAdapter } from "./connect-adapter.js";
import { serveConsole } from "./console-route.js";
import { type Listener, listen } from "./listener.js";
import { createGrpcFastPath } from "./fast-path/grpc-unary.js";
import { type UnaryRoutes, recordUnaryRoutes } from "./fast-path/unary-routes.js";
import { logProtocolFailure } from "./protocol-failure.js";
import { paymentRequiredAs402 } from "./payment-status.js";
import { createLatencyInterceptor, serverLatency } from "./latency.js";
import { createRequestLogInterceptor } from "./request-log.js";
import { Metrics } from "./metrics.js";
import { createTracingInterceptor } from "./tracing.js";
import { registerRoutes } from "./routes.js";
import { createValidationInterceptor } from "./validate.js";

type NodeHandler = ReturnType<typeof guardedConnectAdapter>;
type Req = Parameters<NodeHandler>[0];
type Res = Parameters<NodeHandler>[1];

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly listener: Listener;
  /** Graceful stop: health NOT_SERVING, drain in-flight calls, close connections. Leaves the app open. */
  stop(): Promise<void>;
}

/** The request handler for every protocol. */
export function createHandler(app: App): (req: Req, res: Res) => void {
  const { config } = app;
  const unaryRoutes: UnaryRoutes = new Map();
  const metrics = new Metrics(app);
  const authDeps: AuthenticateDeps = {
    jwt: () => app.jwt(),
    memberRole: (p, u) => app.accounts.memberRole(p, u),
    apiKey: (key, ip, since) => app.apiKeys.authenticate(key, ip, since),
    walletToken: createWalletAuthenticator({ bindings: app.wallets, sessions: app.sessions, clock: app.clock, memberRole: (p, u) => app.accounts.memberRole(p, u) }),
    admitSession: (seen) => app.sessions.admit(seen),
    projectEnvironment: (p) => app.accounts.environmentOf(p),
  };
  const options: GuardedAdapterOptions = {
    log: app.log,
    routes: (router) => registerRoutes(recordUnaryRoutes(router, unaryRoutes), app),
    // Order matters: id and logging outermost, then who is calling, whether they may, then input, then whose data.
    interceptors: [
      metrics.interceptor(),
      // Tracing only when configured: an untraced server has no interceptor to pay for.
      ...(app.tracing ? [createTracingInterceptor(app.tracing.tracer)] : []),
      createLatencyInterceptor(),
      createRequestLogInterceptor(app.log),
      createX402OfferInterceptor(() => app.x402),
      createAuthenticateInterceptor(authDeps),
      createAuthorizeInterceptor(),
      createRateLimitInterceptor({
        limiter: app.limiter,
        clock: app.clock,
        planOf: (p) => app.accounts.planOf(p),
        onDecision: (allowed) => metrics.rateLimitDecision(allowed),
        anonymous: config.anonymousRateLimit,
        onLimited: (keyId, ip) => void app.apiKeys.noteRateLimited(keyId, ip).catch((err: unknown) => app.log.warn({ err }, "could not record rate-limit event")),
      }),
      createValidationInterceptor(),
      // Tenancy reads the validated request: which project it reaches, refused here if not the caller's.
      createTenancyInterceptor(config.platformProject),
    ],
    contextValues: requestContextValues,
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    maxTimeoutMs: config.maxTimeoutMs,
    onProtocolFailure: (f) => {
      logProtocolFailure(app.log, f);
      metrics.protocolFailure(f);
    },
    fallback: (req, res) => plainRoute(app, authDeps, metrics, req as Req, res as Res),
  };
  const connect = guardedConnectAdapter(options);
  // Unary gRPC over HTTP/2 skips Connect's protocol machinery (src/server/fast-path/); the same
  // implementations and interceptors run. FORMSTATE_GRPC_FAST_PATH=0 sends everything through Connect.
  const fast = process.env.FORMSTATE_GRPC_FAST_PATH === "0" ? undefined : createGrpcFastPath({ ...options, routes: unaryRoutes, interceptors: options.interceptors ?? [] });
  return (req, res) => {
    // Stripe's webhook reads its raw body itself and is not for browsers: no CORS.
    if ((req.url ?? "/").split("?")[0] === STRIPE_WEBHOOK_PATH) return void serveStripeWebhook(app.billing.webhooks, req, res);
    if (applyCors(req, res, config.corsOrigins)) return;
    if (fast?.(req, res)) return;
    paymentRequiredAs402(req, res);
    connect(req, res);
  };
}

/** Plain HTTP routes beside the RPCs (and `POST /webhooks/stripe`, routed before CORS above). */
function plainRoute(app: App, authDeps: AuthenticateDeps, metrics: Metrics, req: Req, res: Res): void {
  if (app.config.console && serveConsole(req, res, app.log)) return;
  const path = (req.url ?? "/").split("?")[0];
  if (isTopUpPath(path)) {
    const authenticate = async (h: Headers, ip: string) => {
      const credential = credentialOf(h);
      return credential === undefined ? undefined : resolve(authDeps, credential, ip);
    };
    return void serveTopUp({ rail: app.x402, authenticate }, req as http.IncomingMessage, res as http.ServerResponse);
  }
  if (req.method === "GET" && path === "/.well-known/jwks.json" && app.devIssuer) {
    return json(res, 200, app.devIssuer.jwks());
  }
  if (req.method === "GET" && path === "/metrics") {
    void metrics.scrape().then(
      ({ contentType, body }) => {
        (res as http.ServerResponse).writeHead(200, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
        res.end(body);
      },
      (err: unknown) => {
        app.log.warn({ err }, "metrics scrape failed");
        json(res, 503, { error: "metrics unavailable" });
      },
    );
    return;
  }
  // Server-side latency per method (src/server/latency.ts) for the bench; `?reset=1` starts a new round. Off unless asked.
  if (req.method === "GET" && path === "/debug/latency" && process.env.FORMSTATE_DEBUG_LATENCY === "1") {
    const snapshot = serverLatency.snapshot();
    if ((req.url ?? "").includes("reset=1")) serverLatency.reset();
    return json(res, 200, snapshot);
  }
  if (req.method === "GET" && path === RECEIPT_JWKS_PATH) return json(res, 200, app.receipts.jwks());
  if (req.method === "GET" && path === "/healthz") {
    const serving = app.health.serving();
    // Redis or the identity provider's JWKS down: still serving (local limits, API keys; JWT callers get
    // UNAVAILABLE and retry) but DEGRADED, for operators and load balancers' logs. Taking every instance
    // out for an IdP outage would stop API-key traffic too.
    const jwksDown = app.config.jwt.jwksUrl !== undefined && !app.jwt().jwksAvailable();
    const redis = app.sharedState?.status();
    const degraded = jwksDown || (redis !== undefined && redis !== "connected");
    return json(res, serving ? 200 : 503, {
      status: !serving ? "NOT_SERVING" : degraded ? "DEGRADED" : "SERVING",
      ...(redis && { redis }),
      ...(app.config.jwt.jwksUrl !== undefined && { jwks: jwksDown ? "unavailable" : "ok" }),
    });
  }
  json(res, 404, { error: "not found" });
}

function json(res: Res, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  (res as http.ServerResponse).writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** Listens on the configured port and reports SERVING. */
export async function startServer(app: App, port = app.config.port): Promise<RunningServer> {
  const listener = await listen(createHandler(app), { host: app.config.host, port, tls: app.config.tls });
  app.health.setAll(true);
  return {
    url: listener.url,
    port: listener.port,
    listener,
    async stop() {
      app.health.shutdown();
      // Event streams never finish on their own: end them so the drain below is not held for its whole grace.
      app.events.close();
      await listener.close(app.config.shutdownGraceMs);
    },
  };
}
