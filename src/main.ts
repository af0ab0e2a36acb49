/** Process entry: config -> app -> listen -> signals. */
import { App } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { redactDatabaseUrl } from "./db/database.js";
import { startServer } from "./server/server.js";
import { seedDemoCatalog } from "./seed/demo-catalog.js";
import { accountName } from "./names/names.js";

const DEV_ADMIN = "dev-admin";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`formstate: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
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

main().catch((err: unknown) => {
  process.stderr.write(`formstate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
