/**
 * A second origin for the console: a tiny static HTTP server on another
 * loopback port, serving the esbuild bundle under /console/ the way any
 * static host would (no Formstate code involved).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ConsoleBundle } from "../../console/build.js";

export interface StaticHost {
  origin: string;
  port: number;
  close(): Promise<void>;
}

export async function serveStatic(bundle: ConsoleBundle): Promise<StaticHost> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const name = path === "/console/" ? "index.html" : path.replace(/^\/console\//, "");
    const file = bundle.get(name);
    if (!file) return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": file.contentType }).end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
