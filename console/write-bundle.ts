/** `npm run build:console [dir]`: writes the console for a static host (default `dist/console`). */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { buildConsole } from "./build.js";

const dir = resolve(process.argv[2] ?? "dist/console");
await mkdir(dir, { recursive: true });
for (const [name, file] of await buildConsole()) await writeFile(join(dir, name), file.body);
console.log(`console written to ${dir}; open index.html?api=<Formstate URL> from any origin FORMSTATE_CORS_ORIGINS allows`);
