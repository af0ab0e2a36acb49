/** Process entry of the `formstate` command (dist/cli.js): one process, whatever the command. */
import { runCli } from "./formstate.js";

const code = await runCli(process.argv.slice(2));
// A finished command exits now (a pool or timer left by a dependency must not hold it); `serve` keeps running.
if (code !== "serving") process.exit(code);
