/**
 * A real server for the catalog tests, with clients per project and role.
 * Rate limits are the API-key tests' subject; here they would only throttle
 * the many calls of one user, so they are lifted.
 */
import { type Client, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { AgentService } from "../../gen/formstate/v1/agent_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import type { AppOverrides } from "../../src/app.js";
import * as ledger from "../../src/ledger/ledger.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

export type Role = "admin" | "developer" | "user";

export interface CatalogClients {
  agents: Client<typeof AgentService>;
  models: Client<typeof ModelService>;
  usage: Client<typeof UsageService>;
  accounts: Client<typeof AccountService>;
}

function clientsOver(ts: TestServer, credential: string): CatalogClients {
  const t = ts.grpc(credential);
  return { agents: createClient(AgentService, t), models: createClient(ModelService, t), usage: createClient(UsageService, t), accounts: createClient(AccountService, t) };
}

/** Starts a server for the file's tests (with these variables and overrides) and stops it after them. */
export function useCatalogServer(env: Record<string, string> = {}, overrides: AppOverrides = {}) {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer(env, { plans: new Plans(defaultPlans.map((p) => ({ ...p, rateLimit: { requestsPerSecond: 10_000, burst: 10_000 } }))), ...overrides });
  });
  afterAll(async () => {
    await ts?.close();
  });

  /** Clients signed in as `{projectId}-{role}` with that role. */
  async function clients(projectId: string, role: Role = "developer"): Promise<CatalogClients> {
    return clientsOver(ts, await ts.token({ projectId, role, subject: `${projectId}-${role}` }));
  }

  return {
    get ts() {
      return ts;
    },
    clients,
    /** Creates the project's account (and grants it credits); returns a developer's clients. */
    async project(projectId: string, credits = 0): Promise<CatalogClients> {
      await (await clients(projectId, "admin")).accounts.createAccount({ account: {} });
      if (credits) await ts.app.database.transaction((tx) => ledger.book(tx, { projectId, kind: "grant", amountMicros: credits, idempotencyKey: `t:${projectId}` }, ts.app.clock.now()));
      return clients(projectId);
    },
    /** Clients calling with a new API key of the project with these scopes. */
    async withKey(projectId: string, scopes: Scope[]): Promise<CatalogClients> {
      const admin = createClient(ApiKeyService, ts.grpc(await ts.token({ projectId, role: "admin", subject: `${projectId}-admin` })));
      const { secret } = await admin.createApiKey({ parent: `accounts/${projectId}`, apiKey: { displayName: "catalog", scopes } });
      return clientsOver(ts, secret);
    },
    /** Moves the project to another plan, as billing will. */
    async setPlan(projectId: string, tier: "free" | "pro" | "enterprise"): Promise<void> {
      await ts.app.database.db.updateTable("account").set({ plan_tier: tier }).where("project_id", "=", projectId).execute();
      ts.app.accounts.invalidatePlan(projectId);
    },
  };
}

export const names = (xs: Array<{ name: string }>) => xs.map((x) => x.name).sort();
