/**
 * A 192 MiB request body is refused at the size limit without being read:
 * a 20-byte gRPC frame followed by 192 MiB (the fast path, and the Connect
 * path with a compressed request), and a 192 MiB Connect body sent chunked
 * or with its length declared. The answer is RESOURCE_EXHAUSTED (413 over
 * plain HTTP, not rate limiting's 429), the server stops the upload (the
 * client cannot push the whole body), and the server's memory stays bounded.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readH1Answer } from "../support/raw-rpc.js";
import { codeName } from "../support/raw-rpc.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const TOTAL = 192 * 2 ** 20;
const CHUNK = Buffer.alloc(256 * 1024, 0x61);
const PATH = "/formstate.v1.ModelService/ListModels";

/** The peak RSS growth over `baseline` while `work` runs, sampled every 20 ms. */
async function peakRssDuring<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, growth: peak - baseline };
  } finally {
    clearInterval(timer);
    console.log(`peak rss growth ${((peak - baseline) / 2 ** 20).toFixed(1)} MiB`);
  }
}

/** Pushes `first`, then junk up to TOTAL, honouring backpressure, until the stream is done or the server answered. */
async function pump(stream: NodeJS.WritableStream & { destroyed?: boolean }, first: Buffer, answered: () => boolean): Promise<number> {
  let sent = 0;
  const write = (b: Buffer) =>
    new Promise<void>((resolve) => {
      if (stream.write(b)) resolve();
      else {
        const done = () => {
          stream.off("drain", done);
          stream.off("close", done);
          resolve();
        };
        stream.once("drain", done);
        stream.once("close", done);
      }
    });
  await write(first);
  sent += first.length;
  while (sent < TOTAL && !stream.destroyed && !answered()) {
    await write(CHUNK);
    sent += CHUNK.length;
  }
  return sent;
}

function grpcOversized(url: string, headers: Record<string, string>): Promise<{ code?: string; sent: number }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", () => undefined);
    const req = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", ...headers });
    let status: string | undefined;
    let done = false;
    req.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
    req.on("trailers", (t) => (status = t["grpc-status"] as string | undefined));
    req.on("data", () => undefined);
    req.on("error", () => undefined);
    const frame = Buffer.alloc(20);
    frame.writeUInt32BE(15, 1); // one 15-byte message, then the junk
    const pumped = pump(req, frame, () => done);
    req.on("close", () => {
      done = true;
      void pumped.then((sent) => {
        session.destroy();
        resolve({ code: codeName(status), sent });
      }, reject);
    });
  });
}

function connectOversized(url: string, declareLength: boolean): Promise<{ status: number; code: string; sent: number }> {
  return new Promise((resolve) => {
    let answer: { status: number; code: string } | undefined;
    let sent = 0;
    const headers: Record<string, string> = { "content-type": "application/proto" };
    if (declareLength) headers["content-length"] = String(TOTAL);
    const req = http.request(`${url}${PATH}`, { method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const a = readH1Answer(res.statusCode ?? 0, res.headers, Buffer.concat(chunks));
        answer = { status: a.httpStatus, code: a.code };
      });
    });
    req.on("error", () => undefined);
    req.on("close", () => {
      // Wait for the pump to notice.
      setTimeout(() => resolve({ ...(answer ?? { status: 0, code: "none" }), sent }), 50);
    });
    void pump(req, Buffer.alloc(0), () => answer !== undefined).then((n) => {
      sent = n;
      req.end();
    });
  });
}

describe("a 192 MiB body is refused at the limit, in bounded memory", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("gRPC fast path: a 20-byte frame followed by 192 MiB", async () => {
    const { result, growth } = await peakRssDuring(() => grpcOversized(t.url, {}));
    expect(result.code).toBe("resource_exhausted");
    expect(result.sent).toBeLessThan(TOTAL);
    expect(growth).toBeLessThan(96 * 2 ** 20);
  }, 120_000);

  it("gRPC through Connect (a compressed request): the same", async () => {
    const { result, growth } = await peakRssDuring(() => grpcOversized(t.url, { "grpc-encoding": "gzip" }));
    expect(result.code).toBe("resource_exhausted");
    expect(result.sent).toBeLessThan(TOTAL);
    expect(growth).toBeLessThan(96 * 2 ** 20);
  }, 120_000);

  it("Connect over HTTP/1.1, chunked: 413 resource_exhausted, not 429", async () => {
    const { result, growth } = await peakRssDuring(() => connectOversized(t.url, false));
    expect(result).toMatchObject({ status: 413, code: "resource_exhausted" });
    expect(result.sent).toBeLessThan(TOTAL);
    expect(growth).toBeLessThan(96 * 2 ** 20);
  }, 120_000);

  it("Connect over HTTP/1.1 with the length declared: refused before reading", async () => {
    const { result, growth } = await peakRssDuring(() => connectOversized(t.url, true));
    expect(result).toMatchObject({ status: 413, code: "resource_exhausted" });
    expect(result.sent).toBeLessThan(TOTAL);
    expect(growth).toBeLessThan(96 * 2 ** 20);
  }, 120_000);

  it("Connect over HTTP/1.1: a client slow to read still gets its 413 (the server closes lingering, not with an RST)", async () => {
    // A raw client that keeps uploading for 500 ms without reading: its answer waits in its kernel. A server
    // that closed at once while bytes still arrived sent an RST, and the kernel dropped the unread answer.
    const { port } = new URL(t.url);
    const socket = net.connect(Number(port), "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", resolve));
    socket.pause();
    const received: Buffer[] = [];
    const ended = new Promise<string>((resolve) => {
      socket.on("data", (d: Buffer) => received.push(d));
      socket.on("error", (err) => resolve(`error: ${err.message}`));
      socket.on("end", () => resolve("end"));
    });
    socket.write(`POST ${PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/proto\r\ntransfer-encoding: chunked\r\n\r\n`);
    const chunk = Buffer.concat([Buffer.from(`${CHUNK.length.toString(16)}\r\n`), CHUNK, Buffer.from("\r\n")]);
    const until = Date.now() + 500;
    while (Date.now() < until && !socket.destroyed) {
      if (!socket.write(chunk)) await new Promise((r) => setTimeout(r, 5));
    }
    socket.resume();
    const how = await ended;
    socket.destroy();
    const text = Buffer.concat(received).toString("latin1");
    expect({ how, status: text.slice(0, 12) }).toEqual({ how: "end", status: "HTTP/1.1 413" });
  }, 30_000);

  it("still serves afterwards", async () => {
    const res = await fetch(`${t.url}/healthz`);
    expect(res.status).toBe(200);
  });
});
