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
import { EXIT, reportFailure } from "./errors.js";
import type { Output } from "./operations.js";
import type { TokenOptions } from "./token.js";

/** Set by scripts/build.mjs in the compiled CLI; from package.json when run from source. */
declare const __FORMSTATE_VERSION__: string | undefined;
const VERSION = typeof __FORMSTATE_VERSION__ === "string" ? __FORMSTATE_VERSION__ : (createRequire(import.meta.url)("../../package.json") as { version: string }).version;

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

  const ops = () => import("./operations.js");
  const show = (cmd: Command, r: Output) => print(cmd, r.value, r.text);

  program
    .command("migrate")
    .description("create the database named by DATABASE_URL and run every pending migration")
    .action(async (_o, cmd: Command) => show(cmd, await (await ops()).migrate()));

  program
    .command("token")
    .description("mint a development token signed by the development issuer (refused in production)")
    .option("--project <id>", "the token's project (default: FORMSTATE_DEV_PROJECT, demo)")
    .addOption(new Option("--role <role>", "the role claim").choices(["admin", "developer", "user", "none"]).default("admin"))
    .option("--subject <sub>", "the subject (default: dev-<role>)")
    .option("--ttl <seconds>", "lifetime in seconds, up to 30 days", "43200")
    .action(async (o: TokenOptions, cmd: Command) => {
      const { mintToken } = await import("./token.js");
      const minted = await mintToken(o);
      print(cmd, minted, minted.token);
    });

  const keys = program.command("keys").description("create, list or revoke a project's API keys");
  keys
    .command("create")
    .description("create an API key; its secret is printed only now")
    .addOption(project())
    .option("--name <display name>", "a display name", "")
    .option("--scopes <list>", "comma list of read, write, admin", "read")
    .action(async (o: { project: string; name: string; scopes: string }, cmd: Command) => show(cmd, await (await ops()).createKey(o)));
  keys
    .command("list")
    .description("list the project's API keys (never their secrets)")
    .addOption(project())
    .action(async (o: { project: string }, cmd: Command) => show(cmd, await (await ops()).listKeys(o)));
  keys
    .command("revoke")
    .description("revoke an API key")
    .addOption(project())
    .requiredOption("--key <key>", "the key's id or full name")
    .option("--reason <text>", "why, for the audit log", "revoked from the CLI")
    .action(async (o: { project: string; key: string; reason: string }, cmd: Command) => show(cmd, await (await ops()).revokeKey(o)));

  const credits = program.command("credits").description("grant credits to an account (credits grant)");
  credits
    .command("grant")
    .description("grant credits (idempotent by --request-id)")
    .addOption(project())
    .requiredOption("--amount-micros <n>", "micro-USD to grant (1 USD = 1000000)")
    .requiredOption("--reason <text>", "why, for the ledger")
    .option("--request-id <id>", "idempotency key (default: a new one)")
    .action(async (o: { project: string; amountMicros: string; reason: string; requestId?: string }, cmd: Command) => show(cmd, await (await ops()).grantCredits(o)));

  const accounts = program.command("accounts").description("show an account (accounts show)");
  accounts
    .command("show")
    .description("show an account's plan, credits and usage of its limits")
    .addOption(project())
    .action(async (o: { project: string }, cmd: Command) => show(cmd, await (await ops()).showAccount(o)));

  const receipt = program.command("receipt").description("verify signed ledger receipts offline").exitOverride();
  receipt
    .command("verify")
    .description("verify receipts offline: signatures against the JWKS, entry hashes, the hash chain between consecutive entries (exit 1 if any fails)")
    .argument("<file>", 'receipts: one compact JWS per line, a JSON array, or {"receipts": [...]}')
    .requiredOption("--jwks <file or URL>", "the receipt keys (the server publishes them at /.well-known/receipt-keys.json)")
    .action(async (file: string, o: { jwks: string }, cmd: Command) => {
      const { receiptSummary, verifyReceiptFile } = await import("../receipts/receipt-cli.js");
      const report = await verifyReceiptFile(file, o.jwks);
      print(cmd, report, receiptSummary(report));
      if (!report.ok) throw new Error(`${report.problems.length} problem(s) found in ${file}`);
    });

  // Every subcommand: our exit handling, output, and usage errors that say which option.
  for (const cmd of [keys, credits, accounts, receipt, ...program.commands, ...keys.commands, ...credits.commands, ...accounts.commands, ...receipt.commands]) {
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
