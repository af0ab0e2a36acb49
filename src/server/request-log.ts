/**
 * The outermost interceptor: gives each call a request id (echoed in
 * `x-request-id`), logs its outcome, and turns unexpected errors into an
 * INTERNAL error whose message carries the request id and nothing else, so no
 * stack trace or internal detail reaches a client.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, createContextKey, type Interceptor, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import { principalKey } from "../auth/principal.js";
import type { Logger } from "../logger.js";

export const requestIdKey = createContextKey<string>("", { description: "request id" });

const SAFE_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function createRequestLogInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const given = req.header.get("x-request-id");
    const requestId = given && SAFE_ID.test(given) ? given : randomUUID();
    req.contextValues.set(requestIdKey, requestId);
    const started = performance.now();
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (log.isLevelEnabled("debug")) log.debug(logFields(req, requestId, started), "call ok");
      return res;
    } catch (err) {
      if (err instanceof ConnectError) {
        err.metadata.set("x-request-id", requestId);
        log.info({ ...logFields(req, requestId, started), code: Code[err.code], error: err.rawMessage }, "call failed");
        throw err;
      }
      log.error({ ...logFields(req, requestId, started), err }, "call crashed");
      throw new ConnectError(`internal error (request id ${requestId})`, Code.Internal, { "x-request-id": requestId });
    }
  };
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
