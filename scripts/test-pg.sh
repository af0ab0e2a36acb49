#!/usr/bin/env bash
# `npm run test:pg`: the vitest suite again on PostgreSQL and Redis (each test server in its own
# schema and Redis key prefix: test/support/postgres.ts). test/scale is left out: `npm test` runs it.
# Without PostgreSQL or Redis it skips with a message, or fails under CI=true.
# Ends with a plain "N passed, N failed" line, like `npm test`.
set -uo pipefail
cd "$(dirname "$0")/.."
# synchronous_commit=off for the test database only: on this VM an fsync per commit (~8 ms) makes the
# 12,800-call metering test outlast its timeout; correctness under concurrency does not depend on it.
# Formstate itself never changes the setting (see README, "Several instances").
# Test servers each add a schema of their own; processes a test spawns with this environment use t_spawned.
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?schema=t_spawned&options=-c%20synchronous_commit%3Doff}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
if ! missing=$(node --import tsx scripts/check-shared-stores.ts); then
  if [ "${CI:-}" = "true" ]; then
    echo "!! test:pg needs $missing" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
  echo "== skipping the PostgreSQL + Redis pass: missing $missing"
  echo "0 passed, 0 failed, 0 skipped"
  exit 0
fi
mkdir -p test-output
rm -f test-output/vitest-pg.json
echo "== vitest on PostgreSQL + Redis"
status=0
node_modules/.bin/vitest run --exclude "test/scale/**" --outputFile.json=test-output/vitest-pg.json "$@" || status=1
node -e '
  const pg = require("pg");
  const u = new URL(process.env.DATABASE_URL);
  const schema = u.searchParams.get("schema");
  if (!schema || schema === "public") process.exit(0);
  u.searchParams.delete("schema");
  u.searchParams.delete("options");
  const c = new pg.Client({ connectionString: u.toString() });
  c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).catch((e) => console.error("could not drop", schema, e.message)).finally(() => c.end());
'
node scripts/failed-tests.mjs test-output/vitest-pg.json || true
node -e '
  const fs = require("fs");
  try {
    const r = JSON.parse(fs.readFileSync("test-output/vitest-pg.json", "utf8"));
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests || 0)} skipped`);
  } catch { console.log("0 passed, 1 failed"); }
'
exit $status
