/**
 * Several Formstate processes sharing one PostgreSQL schema and one Redis
 * prefix: each is `npm start`'s command (`node --import tsx src/main.ts`) with
 * its environment, on a loopback port of its own. The shared data directory
 * holds the dev issuer key, so a token signed here is valid on every instance.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { type DevIssuer, loadDevIssuer } from "../../src/auth/dev-issuer.js";
import { defaultPlans } from "../../src/plans/plans.js";

export const PG_URL = process.env.SCALE_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.SCALE_REDIS_URL ?? "redis://127.0.0.1:6379";
const root = resolve(import.meta.dirname, "../..");

/** What is missing to run these tests, or undefined when PostgreSQL and Redis answer. */
export async function missingParts(pgUrl = PG_URL, redisUrl = REDIS_URL): Promise<string | undefined> {
  const missing: string[] = [];
  const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query("select 1");
  } catch {
    missing.push(`PostgreSQL at ${new URL(pgUrl).host} (start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)`);
  } finally {
    await client.end().catch(() => {});
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on("error", () => {});
  try {
    await redis.connect();
    await redis.ping();
  } catch {
    missing.push(`Redis at ${new URL(redisUrl).host} (start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)`);
  } finally {
    redis.disconnect();
  }
  return missing.length ? missing.join("; ") : undefined;
}

export interface Instance {
  name: string;
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  /** Everything it printed. */
  output(): string;
}

export class Cluster {
  readonly tag = `scale_${randomBytes(4).toString("hex")}`;
  readonly dataDir = mkdtempSync(join(tmpdir(), "formstate-scale-"));
  readonly instances: Instance[] = [];
  readonly databaseUrl: string;
  readonly db: pg.Pool;
  private issuer?: DevIssuer;

  constructor(private readonly extraEnv: Record<string, string>) {
    const u = new URL(PG_URL);
    u.searchParams.set("schema", this.tag);
    this.databaseUrl = u.toString();
    this.db = new pg.Pool({ connectionString: PG_URL, max: 2, options: `-c search_path=${this.tag}` });
    // Rate limits of plans high enough that only the key under test is limited.
    const plansFile = join(this.dataDir, "plans.json");
    writeFileSync(
      plansFile,
      JSON.stringify(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0, rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } }))),
    );
    this.extraEnv = { FORMSTATE_PLANS_FILE: plansFile, ...extraEnv };
  }

  env(): Record<string, string> {
    return {
      ...(process.env as Record<string, string>),
      DATABASE_URL: this.databaseUrl,
      REDIS_URL,
      FORMSTATE_REDIS_PREFIX: `${this.tag}:`,
      FORMSTATE_DATA_DIR: this.dataDir,
      FORMSTATE_ENV: "development",
      FORMSTATE_DB_POOL_SIZE: "8",
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      ...this.extraEnv,
    };
  }

  /** Starts one more instance and resolves when it listens. */
  start(name: string): Promise<Instance> {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], { cwd: root, env: this.env(), stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    let out = "";
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start in 60 s:\n${out.slice(-3000)}`)), 60_000);
      child.stderr!.on("data", (d: Buffer) => (out += d));
      child.stdout!.on("data", (d: Buffer) => {
        out += d;
        for (const line of d.toString().split("\n")) {
          if (!line.startsWith("{")) continue;
          const rec = JSON.parse(line) as { msg?: string; url?: string };
          if (rec.msg === "formstate listening") {
            clearTimeout(timer);
            const inst: Instance = { name, url: rec.url!.replace("0.0.0.0", "127.0.0.1"), child, exited, output: () => out };
            this.instances.push(inst);
            resolvePromise(inst);
          }
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} before listening:\n${out.slice(-3000)}`));
      });
    });
  }

  /** A dev-issuer token valid on every instance. */
  async token(projectId: string, role: "admin" | "developer" | "user", subject = `${role}-of-${projectId}`): Promise<string> {
    this.issuer ??= await loadDevIssuer({ dataDir: this.dataDir, issuer: "formstate-dev", audience: "formstate", now: () => Date.now() });
    return this.issuer.sign({ subject, projectId, role });
  }

  async close(): Promise<void> {
    for (const i of this.instances) i.child.kill("SIGKILL");
    await Promise.all(this.instances.map((i) => i.exited));
    await this.db.query(`DROP SCHEMA IF EXISTS "${this.tag}" CASCADE`).catch(() => {});
    await this.db.end();
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const keys = await redis.keys(`${this.tag}:*`).catch(() => [] as string[]);
    if (keys.length) await redis.del(...keys).catch(() => {});
    redis.disconnect();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
