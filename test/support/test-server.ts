/**
 * A real Formstate server for tests: a temporary SQLite file, the dev issuer
 * in a temporary data directory, a loopback port chosen by the OS.
 *
 * With DATABASE_URL=postgres://… in the environment each server gets its own
 * fresh schema there instead (dropped on close), and with REDIS_URL its own
 * key prefix in Redis, so test files running in parallel never meet.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { App, type AppOverrides } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/server/server.js";
import { dropPostgresSchema, postgresTestEnv } from "./postgres.js";

export interface TestServer {
  app: App;
  server: RunningServer;
  url: string;
  dataDir: string;
  /** A dev-issuer token for a project and role. */
  token(opts: { projectId: string; subject?: string; role?: "admin" | "developer" | "user"; ttlSec?: number }): Promise<string>;
  /** Connect's gRPC transport over HTTP/2 with a bearer token. */
  grpc(token?: string): Transport;
  /** Connect's Connect-protocol transport over HTTP/1.1 with a bearer token. */
  connect(token?: string): Transport;
  client<S extends DescService>(service: S, transport: Transport): Client<S>;
  close(): Promise<void>;
}

export function bearer(token: string | undefined): Interceptor[] {
  if (!token) return [];
  return [
    (next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    },
  ];
}

export async function startTestServer(env: Record<string, string> = {}, overrides: AppOverrides = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "formstate-test-"));
  const shared = postgresTestEnv(dataDir);
  const config = loadConfig({
    FORMSTATE_DATA_DIR: dataDir,
    DATABASE_URL: join(dataDir, "formstate.db"),
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    FORMSTATE_SHUTDOWN_GRACE_MS: "5000",
    ...shared.env,
    ...env,
  });
  const app = await App.create(config, { log: createLogger(config.logLevel), ...overrides });
  const server = await startServer(app);
  const url = `http://127.0.0.1:${server.port}`;
  return {
    app,
    server,
    url,
    dataDir,
    token: ({ projectId, subject, role, ttlSec }) =>
      app.devIssuer!.sign({ subject: subject ?? `${role ?? "user"}-of-${projectId}`, projectId, role, ttlSec }),
    grpc: (token) => createGrpcTransport({ baseUrl: url, interceptors: bearer(token) }),
    connect: (token) => createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: bearer(token) }),
    client: (service, transport) => createClient(service, transport),
    async close() {
      await server.stop();
      await app.close();
      if (shared.schema && config.databaseUrl === shared.env.DATABASE_URL) await dropPostgresSchema(shared.schema);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
