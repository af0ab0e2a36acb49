/**
 * The browser console at /console/ (FORMSTATE_CONSOLE, on by default in
 * development only). Built with esbuild on the first request and kept in
 * memory for the life of the process: no build step before `npm start`, and
 * nothing on disk to go stale. The same bundle works from any static host
 * (`npm run build:console`), pointed at the API with `?api=`.
 */
import type http from "node:http";
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "../logger.js";
import { type ConsoleBundle, buildConsole } from "../../console/build.js";

type NodeHandler = ReturnType<typeof connectNodeAdapter>;
type Req = Parameters<NodeHandler>[0];
type Res = Parameters<NodeHandler>[1];

export const CONSOLE_PATH = "/console/";

// The page loads only its own script; it may call any API origin the user names (CORS decides).
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

let bundle: Promise<ConsoleBundle> | undefined;

/** Answers /console and everything under it; returns false for other paths. */
export function serveConsole(req: Req, res: Res, log: Logger): boolean {
  const path = (req.url ?? "/").split("?")[0];
  if (path !== "/console" && !path.startsWith(CONSOLE_PATH)) return false;
  const r = res as http.ServerResponse;
  if (req.method !== "GET" && req.method !== "HEAD") {
    r.writeHead(405, { allow: "GET, HEAD" }).end();
    return true;
  }
  if (path === "/console") {
    const query = (req.url ?? "").slice(path.length);
    r.writeHead(308, { location: CONSOLE_PATH + query }).end();
    return true;
  }
  const name = path.slice(CONSOLE_PATH.length) || "index.html";
  bundle ??= buildConsole().catch((err: unknown) => {
    bundle = undefined; // a fixed source builds on the next request
    throw err;
  });
  bundle.then(
    (files) => {
      const file = files.get(name);
      if (!file) {
        r.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found");
        return;
      }
      r.writeHead(200, { ...SECURITY_HEADERS, "content-type": file.contentType, "content-length": file.body.byteLength });
      r.end(req.method === "HEAD" ? undefined : file.body);
    },
    (err: unknown) => {
      log.error({ err }, "could not build the console");
      r.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("the console could not be built; see the server log");
    },
  );
  return true;
}
