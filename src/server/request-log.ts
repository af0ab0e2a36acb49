/**
 * The outermost interceptor: gives each call a request id (echoed in
 * `x-request-id`), logs its outcome, and turns unexpected errors into an
 * INTERNAL error whose message carries the request id and nothing else, so no
 * stack trace or internal detail reaches a client. A message of a client
 * stream that does not decode is the client's fault: INVALID_ARGUMENT.
 */
import { Code, ConnectError, type Interceptor, type StreamRequest, type StreamResponse, type UnaryRequest } from "@connectrpc/connect";
import { principalKey } from "../auth/principal.js";
import type { Logger } from "../logger.js";
import { callSeenKey, requestIdKey, requestIdOf } from "./request-id.js";

export { requestIdKey };

export function createRequestLogInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    let requestId = req.contextValues.get(requestIdKey);
    if (!requestId) {
      requestId = requestIdOf(req.header.get("x-request-id") ?? undefined);
      req.contextValues.set(requestIdKey, requestId);
    }
    req.contextValues.get(callSeenKey).seen = true;
    const started = performance.now();
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (res.stream) return { ...res, message: guardStream(res, (err) => fail(log, req, requestId, started, err)) } as typeof res;
      if (log.isLevelEnabled("debug")) log.debug(logFields(req, requestId, started), "call ok");
      return res;
    } catch (err) {
      return fail(log, req, requestId, started, err);
    }
  };
}

/** Logs a failed call and throws what the client gets (a module function: no closure per call). */
function fail(log: Logger, req: UnaryRequest | StreamRequest, requestId: string, started: number, err: unknown): never {
  if (err instanceof ConnectError) {
    const e = clientFault(err);
    e.metadata.set("x-request-id", requestId);
    log.info({ ...logFields(req, requestId, started), code: Code[e.code], error: e.rawMessage }, "call failed");
    throw e;
  }
  log.error({ ...logFields(req, requestId, started), err }, "call crashed");
  throw new ConnectError(`internal error (request id ${requestId})`, Code.Internal, { "x-request-id": requestId });
}

/** Errors raised while a streaming call runs (a request message that does not parse, mostly) go through `fail` too. */
async function* guardStream(res: StreamResponse, fail: (err: unknown) => never) {
  try {
    yield* res.message;
  } catch (err) {
    fail(err);
  }
}

// What Connect reports as INTERNAL but a client caused: a message that does not parse or decompress.
const CLIENT_FAULT = /^(parse binary|decompression failed|received compressed envelope)/;

function clientFault(err: ConnectError): ConnectError {
  if (err.code !== Code.Internal || !CLIENT_FAULT.test(err.rawMessage)) return err;
  return new ConnectError(`malformed request: ${err.rawMessage}`, Code.InvalidArgument, err.metadata);
}

/** A call's log fields, built only when a line is written (most calls write none). */
function logFields(req: UnaryRequest | StreamRequest, requestId: string, started: number) {
  const p = req.contextValues.get(principalKey);
  return {
    requestId,
    method: `${req.method.parent.typeName}/${req.method.name}`,
    contentType: req.header.get("content-type") ?? undefined,
    ms: Math.round((performance.now() - started) * 100) / 100,
    ...(p.kind === "user" && { subject: p.subject, project: p.projectId }),
  };
}
