#!/usr/bin/env node
/**
 * Builds @formstate/client into dist/: ES modules and .d.ts compiled by tsc
 * from the repository's src/client/ and the generated code it imports from
 * gen/ (followed import by import, so the package carries only what it
 * needs). The sources are staged first with gen/ beside them, so the
 * published layout is dist/src/*.js + dist/gen/**.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = dirname(fileURLToPath(import.meta.url));
const repo = resolve(pkg, "../..");
const stage = join(pkg, ".stage");
const dist = join(pkg, "dist");

rmSync(stage, { recursive: true, force: true });
rmSync(dist, { recursive: true, force: true });

/** Copies a .ts file into the stage, then every relative module it imports. */
const seen = new Set();
function stageFile(source, target) {
  if (seen.has(source)) return;
  seen.add(source);
  let text = readFileSync(source, "utf8");
  // In the repository the client reaches gen/ at ../../gen; in the package it sits at ../gen.
  if (source.startsWith(join(repo, "src/client"))) text = text.replaceAll('"../../gen/', '"../gen/');
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
  for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
    const tsTarget = resolve(dirname(target), spec.replace(/\.js$/, ".ts"));
    const rel = relative(stage, tsTarget);
    if (rel.startsWith("..")) throw new Error(`${source} imports ${spec}, outside what the package ships`);
    const from = rel.startsWith("gen/") ? join(repo, rel) : join(repo, "src/client", relative("src", rel));
    if (!existsSync(from)) throw new Error(`${source} imports ${spec}: ${from} does not exist`);
    stageFile(from, tsTarget);
  }
}
for (const entry of ["node", "web", "common"]) stageFile(join(repo, "src/client", `${entry}.ts`), join(stage, "src", `${entry}.ts`));

writeFileSync(
  join(stage, "tsconfig.json"),
  JSON.stringify(
    {
      compilerOptions: {
        target: "ES2022",
        lib: ["ES2022", "DOM", "ESNext.Disposable"],
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        skipLibCheck: true,
        declaration: true,
        sourceMap: false,
        rootDir: ".",
        outDir: dist,
        types: ["node"], // the Node entry verifies webhooks with node:crypto
      },
      include: ["src", "gen"],
    },
    null,
    2,
  ),
);
try {
  execFileSync(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", join(stage, "tsconfig.json")], { stdio: "inherit" });
} finally {
  rmSync(stage, { recursive: true, force: true });
}
process.stderr.write(`@formstate/client built: ${[...seen].length} modules -> ${relative(process.cwd(), dist) || dist}\n`);
