/**
 * `formstate token` (`npm run token --`): mints a development token with the
 * key the development server serves. Refused in production and whenever an
 * external identity provider is configured.
 */
import { loadDevIssuer } from "../auth/dev-issuer.js";
import { loadConfig, usesDevIssuer } from "../config.js";
import { UsageError } from "./errors.js";

export interface TokenOptions {
  project?: string;
  role: string;
  subject?: string;
  ttl: string;
}

/** What `token --json` prints. */
export interface MintedToken {
  token: string;
  project: string;
  role: string | null;
  subject: string;
  expireTime: string;
}

export async function mintToken(o: TokenOptions): Promise<MintedToken> {
  const role = o.role === "none" ? undefined : o.role;
  if (role !== undefined && !["admin", "developer", "user"].includes(role)) throw new UsageError("--role must be admin, developer, user or none");
  const ttlSec = Number(o.ttl);
  if (!/^\d+$/.test(o.ttl) || ttlSec <= 0 || ttlSec > 30 * 86400) throw new UsageError("--ttl must be whole seconds from 1 to 2592000");
  // Production without an IdP configured still gets the message that matters: tokens come from the IdP.
  const config = loadConfig(process.env, { requireIdentityProvider: false });
  if (!usesDevIssuer(config)) {
    throw new UsageError("the development issuer is off (production mode or FORMSTATE_JWKS_URL set): get tokens from your identity provider");
  }
  const project = o.project ?? config.devProject;
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(project)) throw new UsageError("--project must match [a-z0-9][a-z0-9-]{0,62}");
  const issuer = await loadDevIssuer({ dataDir: config.dataDir, issuer: config.jwt.issuer!, audience: config.jwt.audience! });
  const subject = o.subject ?? `dev-${role ?? "member"}`;
  const now = Date.now();
  const token = await issuer.sign({ subject, projectId: project, role, ttlSec });
  return { token, project, role: role ?? null, subject, expireTime: new Date(Math.floor(now / 1000) * 1000 + ttlSec * 1000).toISOString() };
}
