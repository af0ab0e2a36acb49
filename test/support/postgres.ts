/**
 * The PostgreSQL + Redis pass of the suite: when DATABASE_URL names a
 * postgres:// database, every test server lives in a schema of its own
 * (created by the server, dropped here on close); when REDIS_URL is set,
 * every server has its own Redis key prefix.
 */
import { randomBytes } from "node:crypto";
import { basename } from "node:path";
import pg from "pg";

const pgUrl = () => (/^postgres(ql)?:\/\//.test(process.env.DATABASE_URL ?? "") ? process.env.DATABASE_URL! : undefined);

/** The environment a test server adds for the shared stores, and its schema if any. */
export function postgresTestEnv(dataDir: string): { env: Record<string, string>; schema?: string } {
  const env: Record<string, string> = {};
  const tag = `${basename(dataDir).replace(/[^a-z0-9]/gi, "").toLowerCase().slice(-10)}${randomBytes(3).toString("hex")}`;
  let schema: string | undefined;
  const base = pgUrl();
  if (base) {
    schema = `t_${tag}`;
    const u = new URL(base);
    u.searchParams.set("schema", schema);
    env.DATABASE_URL = u.toString();
    env.FORMSTATE_DB_POOL_SIZE = "4";
  }
  if (process.env.REDIS_URL) {
    env.REDIS_URL = process.env.REDIS_URL;
    env.FORMSTATE_REDIS_PREFIX = `test:${tag}:`;
  }
  return { env, schema };
}

/** Drops a test server's schema and everything in it. */
export async function dropPostgresSchema(schema: string, url = pgUrl()): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}
