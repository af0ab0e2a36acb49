/**
 * The fast path's LightHeaders must answer like WHATWG Headers for what
 * interceptors, handlers and Connect's trailer helpers do with metadata.
 */
import { describe, expect, it } from "vitest";
import { LightHeaders } from "../../src/server/fast-path/light-headers.js";

type Op = (h: Headers) => void;

/** Runs the same operations on both and compares everything a reader can see. */
function same(ops: Op[], probe: string[]) {
  const real = new Headers();
  const light = new LightHeaders();
  for (const op of ops) {
    op(real);
    op(light);
  }
  const seen = (h: Headers) => {
    const each: [string, string][] = [];
    h.forEach((v, k) => each.push([k, v]));
    return { each, get: probe.map((k) => h.get(k)), has: probe.map((k) => h.has(k)), cookies: h.getSetCookie() };
  };
  expect(seen(light)).toEqual(seen(real));
  return light;
}

describe("LightHeaders", () => {
  it("names are case-insensitive; append joins with a comma; set replaces; delete removes", () => {
    same(
      [
        (h) => h.set("X-RateLimit-Limit", "10"),
        (h) => h.append("x-ratelimit-limit", "20"),
        (h) => h.append("Grpc-Status", "0"),
        (h) => h.set("grpc-status", "8"),
        (h) => h.append("b-header", " padded "),
        (h) => h.set("a-header", "first"),
        (h) => h.delete("A-HEADER"),
        (h) => h.append("z", "last"),
      ],
      ["x-ratelimit-limit", "X-RATELIMIT-LIMIT", "grpc-status", "b-header", "a-header", "missing", "z"],
    );
  });

  it("keeps set-cookie as a list", () => {
    same(
      [(h) => h.append("Set-Cookie", "a=1"), (h) => h.append("set-cookie", "b=2"), (h) => h.set("other", "x")],
      ["set-cookie", "other"],
    );
    same([(h) => h.append("set-cookie", "a=1"), (h) => h.set("set-cookie", "c=3")], ["set-cookie"]);
    same([(h) => h.append("set-cookie", "a=1"), (h) => h.delete("set-cookie")], ["set-cookie"]);
  });

  it("reads Node's incoming headers without pseudo-headers, repeated values joined", () => {
    const h = LightHeaders.fromNode({ ":path": "/x", ":method": "POST", authorization: "Bearer t", "x-multi": ["a", "b"], te: "trailers" });
    expect([...h]).toEqual([
      ["authorization", "Bearer t"],
      ["te", "trailers"],
      ["x-multi", "a, b"],
    ]);
    expect(h.get(":path")).toBeNull();
  });

  it("writes Node's outgoing headers sorted by name, cookies as a list", () => {
    const h = LightHeaders.of("content-type", "application/grpc+proto");
    h.set("x-request-id", "r1");
    h.set("grpc-encoding", "gzip");
    h.append("set-cookie", "a=1");
    h.append("set-cookie", "b=2");
    const node = h.toNode();
    expect(Object.keys(node)).toEqual(["content-type", "grpc-encoding", "set-cookie", "x-request-id"]);
    expect(node["set-cookie"]).toEqual(["a=1", "b=2"]);
  });

  it("can seed a WHATWG Headers (an interceptor copying metadata)", () => {
    const h = LightHeaders.of("x-a", "1");
    h.append("x-b", "2");
    const copied: [string, string][] = [];
    new Headers(h as unknown as HeadersInit).forEach((v, k) => copied.push([k, v]));
    expect(copied).toEqual([
      ["x-a", "1"],
      ["x-b", "2"],
    ]);
  });
});
