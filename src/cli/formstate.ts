/**
 * The admin CLI: `npx formstate <command>` (bin/formstate.js loads the
 * compiled dist/cli.js, built from ./main.ts, in the same process). Commands that change data act on
 * the configured database directly (DATABASE_URL), as an operator, through
 * the same domain logic the server uses; they need no identity provider.
 * Exit codes: 0 ok, 1 failed, 2 bad usage or configuration. `--json` prints
 * JSON on stdout, and a failure as one JSON line on stderr.
 */
import { createRequire } from "node:module";
import { Command, CommanderError, Option } from "commander";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { App } from "../app.js";
import type { ApiKeyPrincipal, UserPrincipal } from "../auth/principal.js";
import { loadConfig } from "../config.js";
import { redactDatabaseUrl } from "../db/database.js";
import { keyName, scopesOf, statusOf } from "../keys/api-keys.js";
import { createLogger } from "../logger.js";
import { accountName } from "../names/names.js";
import { operatorProject } from "../auth/tenancy.js";
import { EXIT, UsageError, reportFailure } from "./errors.js";
import { mintToken } from "./token.js";

/** Set by scripts/build.mjs in the compiled CLI; from package.json when run from source. */
declare const __FORMSTATE_VERSION__: string | undefined;
const VERSION = typeof __FORMSTATE_VERSION__ === "string" ? __FORMSTATE_VERSION__ : (createRequire(import.meta.url)("../../package.json") as { version: string }).version;

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

/** Set by `serve` once the server listens: the process must then stay up. */
let serving = false;

/** The `formstate` program. `out` receives what a command prints on stdout. */
export function buildProgram(out: (text: string) => void = (t) => process.stdout.write(t)): Command {
  const program = new Command("formstate")
    .description("Formstate's server and admin commands.")
    .version(VERSION, "-V, --version", "print the version")
    .option("--json", "print JSON (failures: one JSON line on stderr)")
    .showSuggestionAfterError()
    .configureHelp({ showGlobalOptions: true })
    .addHelpText("after", "\nExit codes: 0 ok, 1 failed, 2 bad usage or configuration.\nMore on a command: formstate help <command>")
    .exitOverride()
    .configureOutput({ writeOut: out, outputError: () => {} }); // errors are printed once, by main()

  const json = (cmd: Command) => Boolean(cmd.optsWithGlobals().json);
  const print = (cmd: Command, value: unknown, text: string) =>
    out(json(cmd) ? `${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2)}\n` : `${text}\n`);
  const project = () => new Option("--project <id>", "the project (account) to act on").makeOptionMandatory();

  program
    .command("serve")
    .description("run the server in this process (same as npm start): PORT, DATABASE_URL, ... from the environment")
    .action(async () => {
      const { serve } = await import("../serve.js");
      await serve();
      // serve() returns once listening; the server keeps this process alive until a signal stops it.
      serving = true;
    });

  program
    .command("migrate")
    .description("create the database named by DATABASE_URL and run every pending migration")
    .action((_o, cmd: Command) =>
      withApp(async (app) => {
        const database = redactDatabaseUrl(app.config.databaseUrl);
        print(cmd, { database, migrated: true }, `migrated ${database}`);
      }),
    );

  program
    .command("token")
    .description("mint a development token signed by the development issuer (refused in production)")
    .option("--project <id>", "the token's project (default: FORMSTATE_DEV_PROJECT, demo)")
    .addOption(new Option("--role <role>", "the role claim").choices(["admin", "developer", "user", "none"]).default("admin"))
    .option("--subject <sub>", "the subject (default: dev-<role>)")
    .option("--ttl <seconds>", "lifetime in seconds, up to 30 days", "43200")
    .action(async (o: { project?: string; role: string; subject?: string; ttl: string }, cmd: Command) => {
      const minted = await mintToken(o);
      print(cmd, minted, minted.token);
    });

  const keys = program.command("keys").description("manage a project's API keys").exitOverride();
  keys
    .command("create")
    .description("create an API key; its secret is printed only now")
    .addOption(project())
    .option("--name <display name>", "a display name", "")
    .option("--scopes <list>", "comma list of read, write, admin", "read")
    .action((o: { project: string; name: string; scopes: string }, cmd: Command) => {
      const scopes = o.scopes.split(",").map((s) => {
        const scope = scopeByName[s.trim()];
        if (!scope) throw new UsageError(`unknown scope ${JSON.stringify(s)}: use read, write, admin`);
        return scope;
      });
      return withApp(async (app) => {
        const { row, secret } = await app.apiKeys.create(
          operator(o.project),
          accountName(o.project),
          { displayName: o.name, scopes, environment: "live", expireTime: null, rateLimit: null, spendCapMicros: null, allowedCidrs: [], allowedModels: [] },
          "",
          "",
        );
        const name = keyName(o.project, row.key_id);
        print(cmd, { name, secret }, `${name}\n${secret}\n(the secret is shown only now)`);
      });
    });
  keys
    .command("list")
    .description("list the project's API keys (never their secrets)")
    .addOption(project())
    .action((o: { project: string }, cmd: Command) =>
      withApp(async (app) => {
        const page = await app.apiKeys.list(operator(o.project), accountName(o.project), [], true, 1000, "");
        const now = Date.now();
        const list = page.items.map((r) => ({
          name: keyName(o.project, r.key_id),
          displayName: r.display_name,
          status: statusOf(r, now),
          kind: r.kind,
          scopes: scopesOf(r).map((s) => Scope[s].toLowerCase()),
        }));
        print(cmd, list, list.map((k) => `${k.name}\t${k.status}\t${k.kind}\t${k.scopes.join(",")}\t${k.displayName}`).join("\n") || "no keys");
      }),
    );
  keys
    .command("revoke")
    .description("revoke an API key")
    .addOption(project())
    .requiredOption("--key <key>", "the key's id or full name")
    .option("--reason <text>", "why, for the audit log", "revoked from the CLI")
    .action((o: { project: string; key: string; reason: string }, cmd: Command) =>
      withApp(async (app) => {
        const name = o.key.includes("/") ? o.key : keyName(o.project, o.key);
        const row = await app.apiKeys.revoke(operator(o.project) as UserPrincipal | ApiKeyPrincipal, name, o.reason, "");
        print(cmd, { name, status: statusOf(row, Date.now()) }, `${name} revoked`);
      }),
    );

  const credits = program.command("credits").description("grant credits to an account").exitOverride();
  credits
    .command("grant")
    .description("grant credits (idempotent by --request-id)")
    .addOption(project())
    .requiredOption("--amount-micros <n>", "micro-USD to grant (1 USD = 1000000)")
    .requiredOption("--reason <text>", "why, for the ledger")
    .option("--request-id <id>", "idempotency key (default: a new one)")
    .action((o: { project: string; amountMicros: string; reason: string; requestId?: string }, cmd: Command) => {
      const amount = Number(o.amountMicros);
      if (!/^\d+$/.test(o.amountMicros) || !Number.isSafeInteger(amount) || amount <= 0) {
        throw new UsageError("--amount-micros must be a positive whole number of micro-USD");
      }
      return withApp(async (app) => {
        // The operator acts as an admin of the platform project, as AddCredits requires in production.
        const platformAdmin = operator(app.config.platformProject);
        const { row, balance } = await app.billing.addCredits(platformAdmin, operatorProject(o.project), amount, o.reason, o.requestId ?? `cli-${Date.now()}`);
        print(cmd, { transaction: row.tx_id, amountMicros: amount, balanceMicros: balance }, `granted ${amount} micro-USD to ${accountName(o.project)}; balance ${balance}`);
      });
    });

  const accounts = program.command("accounts").description("show an account").exitOverride();
  accounts
    .command("show")
    .description("show an account's plan, credits and usage of its limits")
    .addOption(project())
    .action((o: { project: string }, cmd: Command) =>
      withApp(async (app) => {
        const v = await app.accounts.get(operator(o.project), accountName(o.project));
        const shown = {
          name: accountName(o.project),
          displayName: v.row.display_name,
          plan: v.plan.id,
          subscriptionStatus: v.row.subscription_status,
          creditBalanceMicros: v.row.credit_balance_micros,
          agentSlots: { used: v.agentSlotsUsed, limit: v.plan.agentSlots },
          apiKeys: { used: v.apiKeysUsed, limit: v.plan.apiKeyLimit },
        };
        print(
          cmd,
          shown,
          `${shown.name} (${shown.displayName || "no name"}): plan ${shown.plan}, credits ${shown.creditBalanceMicros} micro-USD, agent slots ${shown.agentSlots.used}/${shown.agentSlots.limit ?? "unlimited"}, API keys ${shown.apiKeys.used}/${shown.apiKeys.limit ?? "unlimited"}`,
        );
      }),
    );

  // Every subcommand: our exit handling, output, and usage errors that say which option.
  for (const cmd of [keys, credits, accounts, ...program.commands, ...keys.commands, ...credits.commands, ...accounts.commands]) {
    cmd.exitOverride().configureOutput({ writeOut: out, outputError: () => {} });
  }
  return program;
}

/**
 * Runs the CLI on `argv` (without node and the script); resolves with the
 * exit code, or "serving" when `serve` started the server in this process.
 */
export async function runCli(argv: string[]): Promise<number | "serving"> {
  const program = buildProgram();
  // --json anywhere on the line decides how a failure is printed, even one found while parsing.
  const json = argv.includes("--json");
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.ok;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return serving ? "serving" : EXIT.ok;
  } catch (err) {
    // --help, --version and `help <command>` end parsing by "throwing" success.
    if (err instanceof CommanderError && (err.exitCode === 0 || err.code === "commander.helpDisplayed" || err.code === "commander.version")) return EXIT.ok;
    // `formstate keys` without a subcommand prints the keys help: that is bad usage.
    if (err instanceof CommanderError && err.code === "commander.help") return EXIT.usage;
    return reportFailure(err, json);
  }
}
