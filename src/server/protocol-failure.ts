/**
 * A call answered before the interceptors saw it: unsupported content type,
 * bad framing, a body over the limit or one that does not decode. Neither the
 * request log nor the per-method metrics see those, so both adapters report
 * them here.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Logger } from "../logger.js";

export interface ProtocolFailure {
  method: DescMethod;
  /** grpc, grpc-web or connect. */
  protocol: string;
  code: Code;
  message?: string;
  requestId?: string;
  contentType?: string;
  httpStatus?: number;
}

/** Logged at warn: a client sending such requests is broken or hostile, and its operator wants to know. */
export function logProtocolFailure(log: Logger, f: ProtocolFailure): void {
  log.warn(
    {
      requestId: f.requestId,
      method: `${f.method.parent.typeName}/${f.method.name}`,
      protocol: f.protocol,
      contentType: f.contentType,
      httpStatus: f.httpStatus,
      code: Code[f.code],
      error: f.message,
    },
    "protocol error",
  );
}
