/**
 * Mints a development token: `npm run token -- --project demo --role developer [--subject alice] [--ttl 3600]`.
 * Uses the same key the development server serves; refused in production.
 */
import { parseArgs } from "node:util";
import { loadDevIssuer } from "../auth/dev-issuer.js";
import { ConfigError, loadConfig, usesDevIssuer } from "../config.js";

function fail(message: string): never {
  process.stderr.write(`token: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    project: { type: "string" },
    role: { type: "string", default: "admin" },
    subject: { type: "string" },
    ttl: { type: "string", default: "43200" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write("usage: npm run token -- --project <id> [--role admin|developer|user|none] [--subject <sub>] [--ttl <seconds>]\n");
  process.exit(0);
}
let config;
try {
  config = loadConfig();
} catch (err) {
  fail(err instanceof ConfigError ? err.message : String(err));
}
if (!usesDevIssuer(config)) fail("the development issuer is off (production mode or FORMSTATE_JWKS_URL set): get tokens from your identity provider");
const project = values.project ?? config.devProject;
if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(project)) fail("--project must match [a-z0-9][a-z0-9-]{0,62}");
const role = values.role === "none" ? undefined : values.role;
if (role !== undefined && !["admin", "developer", "user"].includes(role)) fail("--role must be admin, developer, user or none");
const ttlSec = Number(values.ttl);
if (!Number.isInteger(ttlSec) || ttlSec <= 0 || ttlSec > 30 * 86400) fail("--ttl must be whole seconds from 1 to 2592000");
const issuer = await loadDevIssuer({ dataDir: config.dataDir, issuer: config.jwt.issuer!, audience: config.jwt.audience! });
const token = await issuer.sign({ subject: values.subject ?? `dev-${role ?? "member"}`, projectId: project, role, ttlSec });
process.stdout.write(`${token}\n`);
