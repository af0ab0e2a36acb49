/**
 * The admin CLI: `npx formstate <command>`. Commands that change data act on
 * the configured database directly (DATABASE_URL), as an operator, through
 * the same domain logic the server uses. Exit codes: 0 ok, 1 failure,
 * 2 bad usage. `--json` prints machine-readable output.
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ConnectError } from "@connectrpc/connect";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { App } from "../app.js";
import type { ApiKeyPrincipal, UserPrincipal } from "../auth/principal.js";
import { ConfigError, loadConfig } from "../config.js";
import { redactDatabaseUrl } from "../db/database.js";
import { keyName, scopesOf, statusOf } from "../keys/api-keys.js";
import { createLogger } from "../logger.js";
import { RECEIPT_HELP, ReceiptUsageError, receiptCommand } from "../receipts/receipt-cli.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

const help: Record<string, string> = {
  "": `usage: formstate <command> [options]

commands:
  serve                      run the server (same as npm start)
  migrate                    create the database and run migrations
  token                      mint a development token (see: formstate token --help)
  keys create|list|revoke    manage a project's API keys
  credits grant              grant credits to an account
  accounts show              show an account
  receipt verify <file>      verify signed ledger receipts offline

every command takes --help; --json prints JSON. Exit codes: 0 ok, 1 failed, 2 bad usage.`,
  serve: "usage: formstate serve\n  Runs the server with the environment's configuration (PORT, DATABASE_URL, ...).",
  migrate: "usage: formstate migrate [--json]\n  Creates the database named by DATABASE_URL and runs every pending migration.",
  token: "usage: formstate token --project <id> [--role admin|developer|user|none] [--subject <sub>] [--ttl <seconds>]",
  keys: `usage:
  formstate keys create --project <id> [--name <display name>] [--scopes read,write,admin] [--json]
  formstate keys list --project <id> [--json]
  formstate keys revoke --project <id> --key <key id or name> [--reason <text>] [--json]`,
  credits: "usage: formstate credits grant --project <id> --amount-micros <n> --reason <text> [--request-id <id>] [--json]",
  accounts: "usage: formstate accounts show --project <id> [--json]",
  receipt: RECEIPT_HELP,
};

class UsageError extends Error {}

function need(v: string | undefined, flag: string): string {
  if (!v) throw new UsageError(`${flag} is required`);
  return v;
}

/** The operator acting from the CLI: an admin of the project it names. */
function operator(projectId: string): UserPrincipal {
  return { kind: "user", subject: "cli-operator", projectId, role: Role.ADMIN, roleSource: "token", expiresAt: 0 };
}

async function withApp<T>(fn: (app: App) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const app = await App.create(config, { log: createLogger("silent") });
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2)}\n` : `${text}\n`);
}

const scopeByName: Record<string, Scope> = { read: Scope.READ, write: Scope.WRITE, admin: Scope.ADMIN };

async function main(argv: string[]): Promise<number> {
  if (argv[0] === "--help" || argv[0] === "-h") argv = argv.slice(1);
  const [command = ""] = argv;
  // Offline and positional: parsed by its own module, no database.
  if (command === "receipt") return receiptCommand(argv.slice(1), (s) => process.stdout.write(`${s}\n`));
  const hasSub = ["keys", "credits", "accounts"].includes(command) && argv[1] !== undefined && !argv[1].startsWith("-");
  const sub = hasSub ? argv[1] : "";
  const { values } = parseArgs({
    args: argv.slice(hasSub ? 2 : 1),
    options: {
      help: { type: "boolean", short: "h" },
      json: { type: "boolean" },
      project: { type: "string" },
      name: { type: "string" },
      scopes: { type: "string" },
      key: { type: "string" },
      reason: { type: "string" },
      "amount-micros": { type: "string" },
      "request-id": { type: "string" },
      role: { type: "string" },
      subject: { type: "string" },
      ttl: { type: "string" },
    },
    allowPositionals: false,
  });
  if (!(command in help) || command === "") {
    process.stdout.write(`${help[""]}\n`);
    return command === "" || values.help ? 0 : 2;
  }
  if (values.help) {
    process.stdout.write(`${help[command]}\n`);
    return 0;
  }
  const json = Boolean(values.json);
  switch (command) {
    case "serve":
    case "token": {
      const script = command === "serve" ? "src/main.ts" : "src/cli/token.ts";
      const r = spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), join(root, script), ...argv.slice(1)], { stdio: "inherit" });
      return r.status ?? 1;
    }
    case "migrate":
      return withApp(async (app) => {
        print(json, { database: redactDatabaseUrl(app.config.databaseUrl), migrated: true }, `migrated ${redactDatabaseUrl(app.config.databaseUrl)}`);
        return 0;
      });
    case "accounts": {
      if (sub !== "show") throw new UsageError("accounts takes: show");
      const projectId = need(values.project, "--project");
      return withApp(async (app) => {
        const v = await app.accounts.get(operator(projectId), `accounts/${projectId}`);
        const out = {
          name: `accounts/${projectId}`,
          displayName: v.row.display_name,
          plan: v.plan.id,
          subscriptionStatus: v.row.subscription_status,
          creditBalanceMicros: v.row.credit_balance_micros,
          agentSlots: { used: v.agentSlotsUsed, limit: v.plan.agentSlots },
          apiKeys: { used: v.apiKeysUsed, limit: v.plan.apiKeyLimit },
        };
        print(json, out, `${out.name} (${out.displayName || "no name"}): plan ${out.plan}, credits ${out.creditBalanceMicros} micro-USD, agent slots ${out.agentSlots.used}/${out.agentSlots.limit ?? "unlimited"}, API keys ${out.apiKeys.used}/${out.apiKeys.limit ?? "unlimited"}`);
        return 0;
      });
    }
    case "credits": {
      if (sub !== "grant") throw new UsageError("credits takes: grant");
      const projectId = need(values.project, "--project");
      const amount = Number(need(values["amount-micros"], "--amount-micros"));
      if (!Number.isSafeInteger(amount) || amount <= 0) throw new UsageError("--amount-micros must be a positive whole number of micro-USD");
      const reason = need(values.reason, "--reason");
      return withApp(async (app) => {
        // The operator acts as an admin of the platform project, as AddCredits requires in production.
        const platformAdmin = { ...operator(app.config.platformProject) };
        const { row, balance } = await app.billing.addCredits(platformAdmin, `accounts/${projectId}`, amount, reason, values["request-id"] ?? `cli-${Date.now()}`);
        print(json, { transaction: row.tx_id, amountMicros: amount, balanceMicros: balance }, `granted ${amount} micro-USD to accounts/${projectId}; balance ${balance}`);
        return 0;
      });
    }
    case "keys": {
      const projectId = need(values.project, "--project");
      return withApp(async (app) => {
        const caller = operator(projectId);
        if (sub === "create") {
          const scopes = (values.scopes ?? "read").split(",").map((s) => {
            const scope = scopeByName[s.trim()];
            if (!scope) throw new UsageError(`unknown scope ${JSON.stringify(s)}: use read, write, admin`);
            return scope;
          });
          const { row, secret } = await app.apiKeys.create(caller, `accounts/${projectId}`, { displayName: values.name ?? "", scopes, environment: "live", expireTime: null, rateLimit: null, spendCapMicros: null, allowedCidrs: [], allowedModels: [] }, "", "");
          print(json, { name: keyName(projectId, row.key_id), secret }, `${keyName(projectId, row.key_id)}\n${secret}\n(the secret is shown only now)`);
          return 0;
        }
        if (sub === "list") {
          const page = await app.apiKeys.list(caller, `accounts/${projectId}`, [], true, 1000, "");
          const now = Date.now();
          const keys = page.items.map((r) => ({ name: keyName(projectId, r.key_id), displayName: r.display_name, status: statusOf(r, now), kind: r.kind, scopes: scopesOf(r).map((s) => Scope[s].toLowerCase()) }));
          print(json, keys, keys.map((k) => `${k.name}\t${k.status}\t${k.kind}\t${k.scopes.join(",")}\t${k.displayName}`).join("\n") || "no keys");
          return 0;
        }
        if (sub === "revoke") {
          const key = need(values.key, "--key");
          const name = key.includes("/") ? key : keyName(projectId, key);
          const row = await app.apiKeys.revoke(caller as UserPrincipal | ApiKeyPrincipal, name, values.reason ?? "revoked from the CLI", "");
          print(json, { name, status: statusOf(row, Date.now()) }, `${name} revoked`);
          return 0;
        }
        throw new UsageError("keys takes: create, list, revoke");
      });
    }
  }
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError || err instanceof ReceiptUsageError || (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`formstate: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`formstate: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`formstate: ${err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
