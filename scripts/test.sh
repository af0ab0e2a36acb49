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
rm -f test-output/vitest.json
echo "== vitest"
node_modules/.bin/vitest run "$@" || status=1
summary=$(node -e '
  const fs = require("fs");
  try {
    const r = JSON.parse(fs.readFileSync("test-output/vitest.json", "utf8"));
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests || 0)} skipped`);
  } catch { console.log("0 passed, 1 failed"); }
')
if [ "$status" -ne 0 ] && [[ "$summary" == *" 0 failed"* ]]; then
  # A non-test step failed: count it so the closing line never reads green.
  summary=$(echo "$summary" | sed -E 's/ 0 failed/ 1 failed/')
fi
echo "$summary"
exit $status
