/**
 * The request-log interceptor's failure path (src/server/request-log.ts),
 * called directly: a ConnectError reaches the client with the request id in
 * its metadata (a client's malformed message as INVALID_ARGUMENT), anything
 * else as INTERNAL whose message carries the request id and nothing more.
 */
import { Code, ConnectError, type UnaryRequest, createContextValues } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { createRequestLogInterceptor } from "../../src/server/request-log.js";
import { callSeenKey, requestIdKey } from "../../src/server/request-id.js";

function call(thrown: unknown) {
  const values = createContextValues().set(requestIdKey, "req-1").set(callSeenKey, { seen: false });
  const req = { stream: false, header: new Headers(), contextValues: values, method: { name: "M", parent: { typeName: "s.S" } } } as unknown as UnaryRequest;
  const next = createRequestLogInterceptor(createLogger("silent"))(async () => {
    throw thrown;
  });
  return next(req as never).then(
    () => undefined,
    (e: unknown) => ({ e: e as ConnectError, seen: values.get(callSeenKey).seen }),
  );
}

describe("request log: failed calls", () => {
  it("a ConnectError goes out as it is, with the request id", async () => {
    const r = (await call(new ConnectError("no such thing", Code.NotFound)))!;
    expect([r.e.code, r.e.rawMessage, r.e.metadata.get("x-request-id"), r.seen]).toEqual([Code.NotFound, "no such thing", "req-1", true]);
  });

  it("a message the server could not parse is the client's fault: INVALID_ARGUMENT", async () => {
    const r = (await call(new ConnectError("parse binary: premature EOF", Code.Internal)))!;
    expect([r.e.code, r.e.rawMessage, r.e.metadata.get("x-request-id")]).toEqual([Code.InvalidArgument, "malformed request: parse binary: premature EOF", "req-1"]);
  });

  it("anything else is INTERNAL with the request id and no detail", async () => {
    const r = (await call(new Error("secret stack detail")))!;
    expect([r.e.code, r.e.rawMessage, r.e.metadata.get("x-request-id")]).toEqual([Code.Internal, "internal error (request id req-1)", "req-1"]);
  });
});
