/**
 * Runs the server in this process: config -> start-up checks -> app -> listen
 * -> signals. Used by src/main.ts (`npm start`) and `formstate serve`; the
 * process that calls it is the server, so SIGTERM and SIGINT reach it directly.
 */
import { App } from "./app.js";
import { ConfigError, loadConfig, usesDevIssuer } from "./config.js";
import { isPostgresUrl, redactDatabaseUrl, sqliteFilename } from "./db/database.js";
import { startServer } from "./server/server.js";
import { seedDemoCatalog } from "./seed/demo-catalog.js";
import { StartupError, checkWritablePaths } from "./startup-checks.js";
import { accountName } from "./names/names.js";

const DEV_ADMIN = "dev-admin";

/** Starts the server; a bad configuration or an unusable path ends the process with exit code 1 and one message. */
export async function serve(): Promise<void> {
  try {
    await run();
  } catch (err) {
    // Expected start-up failures are one line naming what to fix; anything else keeps its message too, never a stack.
    const message = err instanceof ConfigError || err instanceof StartupError ? err.message : `failed to start: ${err instanceof Error ? err.message : String(err)}`;
    process.stderr.write(`formstate: ${message}\n`);
    process.exit(1);
  }
}

async function run(): Promise<void> {
  const config = loadConfig();
  // Checked before anything is opened, so an unwritable directory fails at once, naming the path and the variable.
  const sqlite = isPostgresUrl(config.databaseUrl) ? undefined : sqliteFilename(config.databaseUrl);
  checkWritablePaths({
    dataDir: usesDevIssuer(config) ? config.dataDir : undefined,
    sqliteFile: sqlite === ":memory:" ? undefined : sqlite,
    sqliteFrom: process.env.DATABASE_URL?.trim() ? "DATABASE_URL" : "FORMSTATE_DATA_DIR",
  });
  const app = await App.create(config);
  if (app.devIssuer) {
    await app.accounts.ensure(config.devProject, DEV_ADMIN, "Demo project");
    await seedDemoCatalog(app, config.devProject, DEV_ADMIN);
  }
  const server = await startServer(app);
  app.log.info({ url: server.url, mode: config.mode, database: redactDatabaseUrl(config.databaseUrl) }, "formstate listening");

  if (app.devIssuer) {
    const token = await app.devIssuer.sign({ subject: DEV_ADMIN, projectId: config.devProject, role: "admin" });
    process.stdout.write(
      [
        "",
        `Formstate is running in development mode on ${server.url} (gRPC, gRPC-Web and Connect on one port).`,
        `Admin token for project "${config.devProject}" (valid 12 h; more with: npm run token -- --project ${config.devProject} --role developer):`,
        "",
        `export FORMSTATE_TOKEN=${token}`,
        "",
        "Try it:",
        "",
        `npx buf curl --http2-prior-knowledge -H "Authorization: Bearer $FORMSTATE_TOKEN" -d '{"name":"${accountName(config.devProject)}"}' ${server.url}/formstate.v1.AccountService/GetAccount`,
        "",
        ...(config.console ? [`Console: ${server.url}/console/ (paste the token to sign in)`, ""] : []),
      ].join("\n"),
    );
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      app.log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    app.log.info({ signal, inFlight: server.listener.inFlight() }, "shutting down: draining in-flight calls");
    await server.stop();
    await app.close();
    app.log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
