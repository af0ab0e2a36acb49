// Names every failed test (and every test file that failed to run) in vitest JSON reports, with the
// first lines of its error, so the end of a CI log says what failed, not only how many.
// Usage: node scripts/failed-tests.mjs test-output/vitest*.json
import { readFileSync } from "node:fs";
import { relative } from "node:path";

const lines = [];
for (const file of process.argv.slice(2)) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    continue; // a run that wrote no report is counted as failed by its caller
  }
  for (const suite of report.testResults ?? []) {
    const where = relative(process.cwd(), suite.name);
    const failed = (suite.assertionResults ?? []).filter((t) => t.status === "failed");
    for (const t of failed) lines.push(`${file}: ${where} > ${t.fullName}\n${excerpt(t.failureMessages?.join("\n"))}`);
    // A file that failed with no failed test in it did not load or failed in a hook.
    if (suite.status === "failed" && failed.length === 0) lines.push(`${file}: ${where} (the file itself)\n${excerpt(suite.message)}`);
  }
}
if (lines.length) console.log(`== failed tests (${lines.length})\n${lines.join("\n")}`);

function excerpt(message = "") {
  return message
    .split("\n")
    .filter((l) => l.trim() && !/node_modules|node:internal|new Promise/.test(l))
    .slice(0, 6)
    .map((l) => `    ${l.slice(0, 300)}`)
    .join("\n");
}
