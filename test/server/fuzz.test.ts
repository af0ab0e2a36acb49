/**
 * Hostile input, fuzzed: over 10,000 seeded malformed requests across gRPC
 * (HTTP/2), gRPC-Web and the Connect protocol (HTTP/1.1), to every method of
 * every service: random and corrupt protobuf (illegal tags, premature ends,
 * invalid UTF-8, deep nesting), truncated and oversized envelopes, compressed
 * flags without an encoding, corrupt and truncated gzip/brotli, junk after a
 * frame, wrong content types, bad JSON; half of them with a valid token, so
 * whatever does parse reaches the handlers. No answer may be INTERNAL or
 * UNKNOWN (or a 5xx), memory must stay bounded, and the server must serve
 * real calls afterwards. FUZZ_SEED=<n> replays a run; FUZZ_COUNT=<n> sizes it.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { type DescMethod, type DescService } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { formstateServices } from "../../src/server/services.js";
import { H2Client, type RawAnswer, h1Request } from "../support/raw-rpc.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20261202);
const COUNT = Number(process.env.FUZZ_COUNT ?? 10_500);
const CONCURRENCY = 48;
const MAX_MESSAGE = 64 * 1024;

/** mulberry32: small, seeded, good enough to pick cases. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)],
    bytes: (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256))),
  };
}
type Rng = ReturnType<typeof rng>;

const varint = (n: number): number[] => {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
};
const tag = (field: number, wire: number) => varint((field << 3) | wire);

/** Protobuf bytes that may or may not parse: every way we know a decoder trips, and plausible fields. */
function protoBody(r: Rng): Buffer {
  switch (r.int(9)) {
    case 0:
      return r.bytes(r.int(64));
    case 1: // illegal tags: field 0, wire types 6 and 7, a stray end-group
      return Buffer.from(r.pick([[0x00, 0x01], [0x0e, 0x01], [0x0f], [0x0c], [0x08 | 4]]));
    case 2: // a varint that never ends
      return Buffer.from([...tag(1 + r.int(8), 0), 0xff, 0xff, 0xff]);
    case 3: // a length past the end
      return Buffer.from([...tag(1 + r.int(8), 2), 0x40, 0x61, 0x62]);
    case 4: { // invalid UTF-8 in a length-delimited field (strings mostly)
      const bad = r.pick([[0xff, 0xfe], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]]);
      return Buffer.from([...tag(1 + r.int(6), 2), bad.length, ...bad]);
    }
    case 5: { // deep nesting of field 1
      let inner: number[] = [];
      for (let i = 0; i < 150 + r.int(200); i++) inner = [...tag(1, 2), ...varint(inner.length), ...inner];
      return Buffer.from(inner);
    }
    case 6: // a fixed64/fixed32 cut short
      return Buffer.from([...tag(1 + r.int(8), r.pick([1, 5])), 0x01, 0x02]);
    default: { // plausible fields of random types and values (often parses: then the handler meets it)
      const parts: number[] = [];
      for (let i = 0, n = 1 + r.int(5); i < n; i++) {
        const field = 1 + r.int(12);
        const wire = r.pick([0, 0, 2, 2, 1, 5]);
        parts.push(...tag(field, wire));
        if (wire === 0) parts.push(...varint(r.pick([0, 1, 2, 7, 127, 300, 0x7fffffff, r.int(1e6)])));
        else if (wire === 2) {
          const v = r.pick([Buffer.from(""), Buffer.from("x"), Buffer.from("projects/p/keys/k"), r.bytes(r.int(20)), Buffer.from("é".repeat(r.int(10)))]);
          parts.push(...varint(v.length), ...v);
        } else parts.push(...r.bytes(wire === 1 ? 8 : 4));
      }
      return Buffer.from(parts);
    }
  }
}

function envelope(flags: number, data: Buffer, announced = data.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(announced >>> 0, 1);
  return Buffer.concat([head, data]);
}

const truncate = (b: Buffer, r: Rng) => b.subarray(0, Math.max(1, r.int(b.length)));
function corrupt(b: Buffer, r: Rng): Buffer {
  const c = Buffer.from(b);
  for (let i = 0; i < 1 + r.int(4); i++) c[r.int(c.length)] ^= 1 << r.int(8);
  return c;
}

/** A body and the encoding header for the enveloped protocols. */
function envelopedBody(r: Rng, payload: Buffer): { body: Buffer; encoding?: string } {
  switch (r.int(12)) {
    case 0:
      return { body: envelope(1, payload) }; // compressed flag, no encoding
    case 1:
      return { body: envelope(1, truncate(gzipSync(payload), r)), encoding: "gzip" };
    case 2:
      return { body: envelope(1, corrupt(gzipSync(payload), r)), encoding: "gzip" };
    case 3:
      return { body: envelope(1, truncate(brotliCompressSync(payload), r)), encoding: "br" };
    case 4:
      return { body: envelope(1, r.bytes(1 + r.int(40))), encoding: r.pick(["gzip", "br"]) };
    case 5:
      return { body: envelope(0, payload, payload.length + 1 + r.int(100)) }; // truncated
    case 6:
      return { body: envelope(0, payload, r.pick([MAX_MESSAGE + 1, 0x7fffffff, 0xffffffff])) }; // announced over the limit
    case 7:
      return { body: r.bytes(r.int(5)) }; // not even a header
    case 8:
      return { body: Buffer.concat([envelope(0, payload), envelope(0, protoBody(r))]) }; // two messages
    case 9:
      return { body: Buffer.concat([envelope(0, payload), r.bytes(1 + r.int(30))]) }; // junk after the frame
    case 10:
      return { body: envelope(r.pick([0x02, 0x80, 0x7e, 0xff]), payload) }; // stray flags
    default:
      return { body: envelope(r.int(2), r.int(2) ? gzipSync(payload) : payload), encoding: r.pick(["gzip", "snappy", "identity", "gzip, br"]) };
  }
}

interface Case {
  protocol: "grpc" | "grpc-web" | "connect";
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

function makeCase(r: Rng, method: DescMethod, token: string): Case {
  const path = `/${method.parent.typeName}/${method.name}`;
  const auth: Record<string, string> = r.int(2) ? { authorization: `Bearer ${token}` } : {};
  // A deadline on every call: Health/Watch that parses streams until it.
  auth["grpc-timeout"] = "3S";
  auth["connect-timeout-ms"] = "3000";
  const payload = protoBody(r);
  const protocol = r.pick(["grpc", "grpc", "grpc-web", "connect", "connect"] as const);
  if (protocol === "connect" && method.methodKind === "unary") {
    switch (r.int(6)) {
      case 0:
        return { protocol, path, headers: { ...auth, "content-type": "application/proto", "content-encoding": "gzip" }, body: r.int(2) ? truncate(gzipSync(payload), r) : corrupt(gzipSync(payload), r) };
      case 1:
        return { protocol, path, headers: { ...auth, "content-type": "application/proto", "content-encoding": "br" }, body: truncate(brotliCompressSync(payload), r) };
      case 2: {
        const json = r.pick(["{", "[]", '{"name": 5}', '{"pageSize": "x"}', '{"nope": true}', "null", '{"name": "\u0000"}']);
        return { protocol, path, headers: { ...auth, "content-type": "application/json" }, body: r.int(4) ? Buffer.from(json) : Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]) };
      }
      case 3:
        return { protocol, path, headers: { ...auth, "content-type": r.pick(["text/plain", "application/xml", "application/proto+gzip", ""]) }, body: payload };
      default:
        return { protocol, path, headers: { ...auth, "content-type": "application/proto" }, body: payload };
    }
  }
  const { body, encoding } = envelopedBody(r, payload);
  const format = r.int(10) === 0 ? "+json" : r.pick(["", "+proto"]);
  const base = protocol === "connect" ? "application/connect" : protocol === "grpc" ? "application/grpc" : "application/grpc-web";
  const headers: Record<string, string> = { ...auth, "content-type": `${base}${protocol === "connect" && !format ? "+proto" : format}` };
  if (encoding) headers[protocol === "connect" ? "connect-content-encoding" : "grpc-encoding"] = encoding;
  return { protocol, path, headers, body };
}

function gcNow(): () => void {
  setFlagsFromString("--expose_gc");
  return runInNewContext("gc") as () => void;
}

describe("fuzz: malformed requests on every protocol and method", () => {
  let t: TestServer;
  let token: string;
  const methods: DescMethod[] = [];

  beforeAll(async () => {
    t = await startTestServer({ FORMSTATE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE) });
    token = await t.token({ projectId: "fuzz-project", role: "admin" });
    const services: DescService[] = [...formstateServices, Health, ServerReflection, ServerReflectionAlpha];
    for (const s of services) methods.push(...s.methods);
  });
  afterAll(async () => {
    await t?.close();
  });

  it(`answers ${COUNT} malformed requests (seed ${SEED}) without INTERNAL, with bounded memory, and keeps serving`, async () => {
    const gc = gcNow();
    const r = rng(SEED);
    const h2 = new H2Client(t.url);
    const tally = new Map<string, number>();
    const bad: string[] = [];
    const slow: [number, string][] = [];
    const run = async (c: Case) => {
      let a: RawAnswer;
      const t0 = performance.now();
      try {
        a = c.protocol === "grpc" ? await h2.request(c.path, c.headers, c.body) : await h1Request(t.url, c.path, c.headers, c.body);
      } catch (e) {
        bad.push(`${c.protocol} ${c.path} ${JSON.stringify({ ...c.headers, authorization: undefined })} body=${c.body.toString("hex").slice(0, 80)}: no answer (${(e as Error).message})`);
        return;
      }
      slow.push([performance.now() - t0, `${c.protocol} ${c.path} ${a.code} ${c.body.length}`]);
      const key = `${c.protocol}:${a.code}`;
      tally.set(key, (tally.get(key) ?? 0) + 1);
      // 505: Connect refuses bidi streams over HTTP/1.1 (HTTP Version Not Supported), a correct answer.
      if (a.code === "internal" || a.code === "unknown" || (a.httpStatus >= 500 && a.httpStatus !== 505)) {
        bad.push(`${c.protocol} ${c.path} ${JSON.stringify({ ...c.headers, authorization: undefined })} body=${c.body.toString("hex").slice(0, 80)} -> ${a.httpStatus} ${a.code}: ${a.message}`);
      }
    };

    // Warm up (JIT, connections, caches) before the memory baseline.
    const cases = Array.from({ length: COUNT }, () => makeCase(r, r.pick(methods), token));
    await Promise.all(cases.slice(0, 200).map(run));
    gc();
    const before = process.memoryUsage();
    const started = performance.now();
    let next = 200;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < cases.length) await run(cases[next++]);
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    gc();
    const after = process.memoryUsage();
    h2.close();

    const summary = [...tally.entries()].sort().map(([k, n]) => `${k}=${n}`).join(" ");
    console.log(`fuzz seed ${SEED}: ${COUNT} requests in ${seconds.toFixed(1)} s; heap ${(before.heapUsed / 2 ** 20).toFixed(0)} -> ${(after.heapUsed / 2 ** 20).toFixed(0)} MiB, rss ${(before.rss / 2 ** 20).toFixed(0)} -> ${(after.rss / 2 ** 20).toFixed(0)} MiB; ${summary}`);
    if (process.env.FUZZ_SLOW) console.log(slow.sort((x, y) => y[0] - x[0]).slice(0, 30).map(([ms, w]) => `${ms.toFixed(0)}ms ${w}`).join("\n"));
    expect(bad.slice(0, 20).join("\n"), `seed ${SEED}`).toBe("");
    // Every protocol was exercised, and something reached the handlers.
    for (const p of ["grpc", "grpc-web", "connect"]) expect([...tally.keys()].some((k) => k.startsWith(`${p}:`))).toBe(true);
    expect([...tally.keys()].some((k) => /:(invalid_argument)$/.test(k))).toBe(true);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(64 * 2 ** 20);
    expect(after.rss - before.rss).toBeLessThan(256 * 2 ** 20);

    // Still serving: real clients on both HTTP versions.
    for (const transport of [t.grpc(token), t.connect(token)]) {
      const res = await t.client(Health, transport).check({ service: "" });
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
  }, 180_000);
});
