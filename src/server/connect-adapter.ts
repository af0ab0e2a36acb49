/**
 * Connect's Node adapter (connectNodeAdapter), with three things it lacks:
 *
 * - the request body of a single-message call (unary, server-streaming) is
 *   read by us with a hard limit, so an oversized body is never held in memory
 *   and the stream or connection is cut after the RESOURCE_EXHAUSTED answer;
 *   over plain HTTP (the Connect protocol) that answer is 413, not the 429 of
 *   rate limiting;
 * - that body is decoded once before Connect sees it, so corrupt compression,
 *   a compressed flag without an encoding and protobuf that does not parse are
 *   INVALID_ARGUMENT (Connect answers INTERNAL for those);
 * - a call that fails before the interceptors run (415, 405, bad framing,
 *   the failures above) is logged at warn with its request id, which it also
 *   gets in `x-request-id`.
 */
import { Code, ConnectError, createConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { type ConnectNodeAdapterOptions, compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "../logger.js";
import { fixGrpcMessage } from "./grpc-message.js";
import type { ProtocolFailure } from "./protocol-failure.js";
import { callSeenKey, requestIdKey } from "./request-id.js";
import { type NodeRequest, type NodeResponse, bodyFormat, bodyTooLarge, checkDecodable, isBodyTooLarge, readBodyCapped, stopReading } from "./request-body.js";

export interface GuardedAdapterOptions extends ConnectNodeAdapterOptions {
  readMaxBytes: number;
  log: Logger;
  /** Told of every call answered before the interceptors ran (logs, metrics). */
  onProtocolFailure?: (failure: ProtocolFailure) => void;
}

type NodeHandler = (req: NodeRequest, res: NodeResponse) => void;

export function guardedConnectAdapter(options: GuardedAdapterOptions): NodeHandler {
  options.acceptCompression ??= [compressionGzip, compressionBrotli];
  const router = createConnectRouter(options);
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) paths.set(h.requestPath, h);
  const { readMaxBytes, log } = options;

  return (req, res) => {
    const uHandler = paths.get((req.url ?? "").split("?", 2)[0]);
    if (!uHandler) {
      options.fallback?.(req as never, res as never);
      return;
    }
    const values = options.contextValues?.(req as never);
    let uReq: UniversalServerRequest;
    try {
      uReq = universalRequestFromNodeRequest(req as never, res as never, undefined, values);
    } catch {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("bad request");
      return;
    }
    const requestId = values?.get(requestIdKey) || undefined;
    let failure: ConnectError | undefined;
    const kind = uHandler.method.methodKind;
    if ((kind === "unary" || kind === "server_streaming") && req.method === "POST") {
      const format = bodyFormat(req.headers);
      const cap = format && !format.enveloped ? readMaxBytes : readMaxBytes + 5;
      // Connect checks a declared length itself before reading: mark it ours, so it is a 413 and the upload is cut.
      if (Number(req.headers["content-length"]) > cap) {
        failure = bodyTooLarge(cap);
        stopReading(req, res);
      }
      const input = uHandler.method.input;
      uReq = {
        ...uReq,
        body: (async function* () {
          try {
            const body = await readBodyCapped(req, cap);
            if (format) await checkDecodable(body, format, input, readMaxBytes);
            yield body;
          } catch (e) {
            failure = ConnectError.from(e);
            if (isBodyTooLarge(e)) stopReading(req, res);
            throw e;
          }
        })(),
      };
    }
    let reported = false;
    const report = (answered: UniversalServerResponse) => {
      if (reported || values?.get(callSeenKey).seen) return;
      const code = failure?.code ?? codeOf(answered);
      if (code === undefined) return;
      reported = true;
      options.onProtocolFailure?.({
        method: uHandler.method,
        protocol: uHandler.protocolNames.join(","),
        code,
        message: failure?.rawMessage,
        requestId,
        contentType: req.headers["content-type"],
        httpStatus: answered.status,
      });
    };
    uHandler(uReq)
      .then((uRes) => {
        // Calls the interceptors saw carry their id already; one refused before them gets it here.
        const answered = values?.get(callSeenKey).seen ? { ...uRes } : withRequestId(uRes, requestId);
        if (uHandler.protocolNames.includes("grpc")) grpcMessageAsSpecified(answered, uRes);
        // RESOURCE_EXHAUSTED maps to 429 over HTTP; a body too large is 413, not rate limiting.
        if (failure && isBodyTooLarge(failure) && answered.status === 429) answered.status = 413;
        // Reported before the answer goes out when already known (metrics then agree with what the client saw).
        if (failure || answered.status >= 400) report(answered);
        return universalResponseToNodeResponse(answered, res as never).then(() => report(answered));
      })
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        log.warn({ requestId, err: reason }, "could not write the answer");
      });
  };
}

/** gRPC trailers are final only after the body is written: re-encode grpc-message when they are read. */
function grpcMessageAsSpecified(answered: UniversalServerResponse, uRes: UniversalServerResponse): void {
  fixGrpcMessage(answered.header);
  Object.defineProperty(answered, "trailer", {
    get() {
      fixGrpcMessage(uRes.trailer);
      return uRes.trailer;
    },
  });
}

function withRequestId(uRes: UniversalServerResponse, requestId: string | undefined): UniversalServerResponse {
  const header = new Headers(uRes.header);
  if (requestId && !header.has("x-request-id")) header.set("x-request-id", requestId);
  return { ...uRes, header };
}

/** The failure code of an answer, when it can be seen without reading the body (gRPC-Web trailers are in it). */
function codeOf(uRes: UniversalServerResponse): Code | undefined {
  const status = uRes.trailer?.get("grpc-status") ?? uRes.header?.get("grpc-status");
  if (status) return status === "0" ? undefined : (Number(status) as Code);
  if (uRes.status === 415 || uRes.status === 405) return Code.Unimplemented;
  if (uRes.status >= 400) return Code.InvalidArgument;
  return undefined;
}
