#!/usr/bin/env bash
# Fails when gen/ or third_party/ is stale: regenerates both in a scratch copy and diffs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r proto third_party scripts buf.yaml buf.gen.yaml package.json "$tmp"/
ln -s "$PWD/node_modules" "$tmp/node_modules"
(cd "$tmp" && node --import tsx scripts/extract-third-party.ts >/dev/null && node_modules/.bin/buf generate)
if ! diff -r third_party "$tmp/third_party" >/dev/null || ! diff -r gen "$tmp/gen" >/dev/null; then
  echo "gen/ or third_party/ is stale: run 'npm run generate' and commit the result" >&2
  diff -r gen "$tmp/gen" | head -40 >&2 || true
  diff -r third_party "$tmp/third_party" | head -20 >&2 || true
  exit 1
fi
echo "gen/ and third_party/ are fresh"
