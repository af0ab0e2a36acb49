/**
 * What the CLI's database commands do, as an operator, through the same
 * domain logic the server uses. Loaded only when such a command runs, so
 * `--help`, `--version` and `token` do not load the whole app.
 */
import { accountName } from "../names/names.js";
import { operatorProject } from "../auth/tenancy.js";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { App } from "../app.js";
import type { ApiKeyPrincipal, UserPrincipal } from "../auth/principal.js";
import { loadConfig } from "../config.js";
import { redactDatabaseUrl } from "../db/database.js";
import { keyName, scopesOf, statusOf } from "../keys/api-keys.js";
import { createLogger } from "../logger.js";
import { UsageError } from "./errors.js";

/** A command's result: `value` for --json, `text` for people. */
export interface Output {
  value: unknown;
  text: string;
}

/** The operator acting from the CLI: an admin of the project it names. */
function operator(projectId: string): UserPrincipal {
  return { kind: "user", subject: "cli-operator", projectId, role: Role.ADMIN, roleSource: "token", expiresAt: 0 };
}

/** Opens the database (running migrations) for one command; no identity provider needed. */
async function withApp<T>(fn: (app: App) => Promise<T>): Promise<T> {
  const config = loadConfig(process.env, { requireIdentityProvider: false });
  const app = await App.create(config, { log: createLogger("silent") });
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

const scopeByName: Record<string, Scope> = { read: Scope.READ, write: Scope.WRITE, admin: Scope.ADMIN };

export function migrate(): Promise<Output> {
  return withApp(async (app) => {
    const database = redactDatabaseUrl(app.config.databaseUrl);
    return { value: { database, migrated: true }, text: `migrated ${database}` };
  });
}

export function createKey(o: { project: string; name: string; scopes: string }): Promise<Output> {
  const scopes = o.scopes.split(",").map((s) => {
    const scope = scopeByName[s.trim()];
    if (!scope) throw new UsageError(`unknown scope ${JSON.stringify(s)}: use read, write, admin`);
    return scope;
  });
  return withApp(async (app) => {
    const { row, secret } = await app.apiKeys.create(
      operator(o.project),
      accountName(o.project),
      { displayName: o.name, scopes, expireTime: null, rateLimit: null, spendCapMicros: null, allowedCidrs: [], allowedModels: [] },
      "",
      "",
    );
    const name = keyName(o.project, row.key_id);
    return { value: { name, secret }, text: `${name}\n${secret}\n(the secret is shown only now)` };
  });
}

export function listKeys(o: { project: string }): Promise<Output> {
  return withApp(async (app) => {
    const page = await app.apiKeys.list(operator(o.project), accountName(o.project), [], true, 1000, "");
    const now = Date.now();
    const list = page.items.map((r) => ({
      name: keyName(o.project, r.key_id),
      displayName: r.display_name,
      status: statusOf(r, now),
      kind: r.kind,
      scopes: scopesOf(r).map((s) => Scope[s].toLowerCase()),
    }));
    return { value: list, text: list.map((k) => `${k.name}\t${k.status}\t${k.kind}\t${k.scopes.join(",")}\t${k.displayName}`).join("\n") || "no keys" };
  });
}

export function revokeKey(o: { project: string; key: string; reason: string }): Promise<Output> {
  return withApp(async (app) => {
    const name = o.key.includes("/") ? o.key : keyName(o.project, o.key);
    const row = await app.apiKeys.revoke(operator(o.project) as UserPrincipal | ApiKeyPrincipal, name, o.reason, "");
    return { value: { name, status: statusOf(row, Date.now()) }, text: `${name} revoked` };
  });
}

export function grantCredits(o: { project: string; amountMicros: string; reason: string; requestId?: string }): Promise<Output> {
  const amount = Number(o.amountMicros);
  if (!/^\d+$/.test(o.amountMicros) || !Number.isSafeInteger(amount) || amount <= 0) {
    throw new UsageError("--amount-micros must be a positive whole number of micro-USD");
  }
  return withApp(async (app) => {
    // The operator acts as an admin of the platform project, as AddCredits requires in production.
    const platformAdmin = operator(app.config.platformProject);
    const { row, balance } = await app.billing.addCredits(platformAdmin, operatorProject(o.project), amount, o.reason, o.requestId ?? `cli-${Date.now()}`);
    return { value: { transaction: row.tx_id, amountMicros: amount, balanceMicros: balance }, text: `granted ${amount} micro-USD to ${accountName(o.project)}; balance ${balance}` };
  });
}

export function showAccount(o: { project: string }): Promise<Output> {
  return withApp(async (app) => {
    const v = await app.accounts.get(operator(o.project), accountName(o.project));
    const shown = {
      name: accountName(o.project),
      displayName: v.row.display_name,
      plan: v.plan.id,
      subscriptionStatus: v.row.subscription_status,
      creditBalanceMicros: v.row.credit_balance_micros,
      /** live, or test for a test-mode project (docs/test-mode.md). */
      environment: v.row.environment,
      testCreditBalanceMicros: v.row.test_credit_balance_micros,
      agentSlots: { used: v.agentSlotsUsed, limit: v.plan.agentSlots },
      apiKeys: { used: v.apiKeysUsed, limit: v.plan.apiKeyLimit },
    };
    const credits = shown.environment === "test" ? `test mode, sandbox credits ${shown.testCreditBalanceMicros} micro-USD` : `credits ${shown.creditBalanceMicros} micro-USD`;
    const text = `${shown.name} (${shown.displayName || "no name"}): plan ${shown.plan}, ${credits}, agent slots ${shown.agentSlots.used}/${shown.agentSlots.limit ?? "unlimited"}, API keys ${shown.apiKeys.used}/${shown.apiKeys.limit ?? "unlimited"}`;
    return { value: shown, text };
  });
}
