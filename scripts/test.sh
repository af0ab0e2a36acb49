#!/usr/bin/env bash
# `npm test`: typecheck, proto lint and format, generated-code freshness, then vitest.
# Ends with a plain "N passed, N failed" line that CI reads.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
step() {
  echo "== $1"
  shift
  if ! "$@"; then
    echo "!! failed: $*" >&2
    status=1
  fi
}
step "typecheck" node_modules/.bin/tsc --noEmit -p tsconfig.json
step "buf lint" node_modules/.bin/buf lint
step "buf format" node_modules/.bin/buf format --diff --exit-code proto
step "generated code is fresh" bash scripts/check-gen.sh
step "docs/api.md is fresh" node --import tsx scripts/generate-api-docs.ts --check
mkdir -p test-output
rm -f test-output/vitest.json test-output/vitest-connect-path.json
# The suite runs twice: unary gRPC calls through the fast path (src/server/fast-path/), then every call
# through Connect's handler. The fast path is acceptable only while both runs pass alike.
echo "== vitest (gRPC fast path on)"
FORMSTATE_GRPC_FAST_PATH=1 node_modules/.bin/vitest run "$@" || status=1
echo "== vitest (FORMSTATE_GRPC_FAST_PATH=0: every call through Connect's handler)"
FORMSTATE_GRPC_FAST_PATH=0 node_modules/.bin/vitest run --outputFile.json=test-output/vitest-connect-path.json "$@" || status=1
node scripts/failed-tests.mjs test-output/vitest.json test-output/vitest-connect-path.json || true
summary=$(node -e '
  const fs = require("fs");
  try {
    const runs = ["test-output/vitest.json", "test-output/vitest-connect-path.json"].map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
    const line = (r) => `${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests || 0)} skipped`;
    console.error(`fast path: ${line(runs[0])}; Connect path: ${line(runs[1])}`);
    const sum = (k) => runs.reduce((n, r) => n + (r[k] || 0), 0);
    console.log(line({ numPassedTests: sum("numPassedTests"), numFailedTests: sum("numFailedTests"), numPendingTests: sum("numPendingTests"), numTodoTests: sum("numTodoTests") }));
  } catch { console.log("0 passed, 1 failed"); }
')
if [ "$status" -ne 0 ] && [[ "$summary" == *" 0 failed"* ]]; then
  # A non-test step failed: count it so the closing line never reads green.
  summary=$(echo "$summary" | sed -E 's/ 0 failed/ 1 failed/')
fi
echo "$summary"
exit $status
