/**
 * One TCP port for every client. Node's cleartext HTTP/2 server refuses
 * HTTP/1.1, so a plain `net.Server` reads the first bytes of each connection:
 * the HTTP/2 connection preface goes to an http2 server (gRPC with prior
 * knowledge, Connect over h2c, buf curl), anything else to an HTTP/1.1 server
 * (Connect and gRPC-Web from browsers, curl). With TLS, ALPN decides instead.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface ListenerOptions {
  host: string;
  port: number;
  tls?: { certFile: string; keyFile: string };
  /** A connection that sends nothing for this long is dropped. */
  firstByteTimeoutMs?: number;
}

/** The running listener: its address and a graceful close. */
export interface Listener {
  readonly port: number;
  readonly url: string;
  /** Stops accepting, lets in-flight requests finish (up to graceMs), then closes every connection. */
  close(graceMs: number): Promise<void>;
  /** Requests being served now. */
  inFlight(): number;
}

export async function listen(handler: Handler, opts: ListenerOptions): Promise<Listener> {
  let active = 0;
  const drained = new Set<() => void>();
  const counted: Handler = (req, res) => {
    active++;
    res.once("close", () => {
      active--;
      if (active === 0) for (const fn of drained) fn();
    });
    handler(req, res);
  };

  const sessions = new Set<http2.Http2Session>();
  const sockets = new Set<net.Socket>();
  const h2 = opts.tls
    ? http2.createSecureServer({ cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile), allowHTTP1: true }, counted)
    : http2.createServer({}, counted);
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  const h1 = http.createServer(counted as http.RequestListener);
  h1.keepAliveTimeout = 5_000;
  h1.headersTimeout = 10_000;
  h1.requestTimeout = 60_000;
  // h1 never calls listen(), but its header and request timers start on 'listening'.
  h1.emit("listening");

  const server: net.Server = opts.tls ? (h2 as unknown as net.Server) : net.createServer((socket) => route(socket));
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });

  function route(socket: net.Socket) {
    let buffered = Buffer.alloc(0);
    socket.setTimeout(opts.firstByteTimeoutMs ?? 5_000, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const n = Math.min(buffered.length, PREFACE.length);
      const looksH2 = buffered.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (looksH2 && buffered.length < PREFACE.length) return; // a prefix of the preface: wait for the rest
      socket.off("data", onData);
      socket.pause();
      socket.setTimeout(0);
      socket.unshift(buffered);
      if (looksH2) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  const shownHost = opts.host === "0.0.0.0" || opts.host === "::" ? "localhost" : opts.host;

  return {
    port: address.port,
    url: `${opts.tls ? "https" : "http"}://${shownHost}:${address.port}`,
    inFlight: () => active,
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Ask HTTP/2 clients to stop opening streams; streams already open finish.
      for (const s of sessions) s.close();
      h1.closeIdleConnections();
      if (active > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          drained.add(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
