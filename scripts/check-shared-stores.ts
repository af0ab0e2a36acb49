/**
 * Whether PostgreSQL (DATABASE_URL) and Redis (REDIS_URL) answer: exits 0, or
 * prints what is missing and how to start it, and exits 1. For test-pg.sh.
 */
import { missingParts } from "../test/scale/cluster.js";

const missing = await missingParts(process.env.DATABASE_URL, process.env.REDIS_URL);
if (missing) {
  process.stdout.write(`${missing}\n`);
  process.exit(1);
}
