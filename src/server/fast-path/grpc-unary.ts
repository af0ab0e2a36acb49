/**
 * The gRPC fast path: unary `application/grpc` / `application/grpc+proto`
 * calls over HTTP/2, served straight on Node's HTTP/2 compatibility API
 * instead of through Connect's protocol machinery (async-iterable pipelines,
 * an AbortController, a deadline timer and a DOMException per call: most of
 * the distance to @grpc/grpc-js in a CPU profile).
 *
 * Same behaviour as Connect's gRPC handler, built from Connect's own pieces
 * where they are exported: the same service implementations and interceptor
 * chain, context values, grpc-timeout parsing (and `ctx.signal` aborting at
 * the deadline), request/response size limits, gzip/br response compression
 * negotiation, and error trailers with typed details (`setTrailerStatus`).
 * Anything else (other protocols, streaming methods, compressed requests,
 * HTTP/1.1) is left to Connect: `serve` returns false.
 */
import http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type HandlerContext, type Interceptor, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { type Compression, compressionNegotiate, createMethodSerializationLookup, validateUniversalHandlerOptions } from "@connectrpc/connect/protocol";
import { parseTimeout } from "@connectrpc/connect/protocol-grpc";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { bodyTooLarge, isBodyTooLarge, messageTooLarge, malformed, parseBinary, stopReading } from "../request-body.js";
import { setGrpcStatus } from "../grpc-message.js";
import type { ProtocolFailure } from "../protocol-failure.js";
import { requestIdKey } from "../request-id.js";
import { LightHeaders } from "./light-headers.js";
import type { UnaryRoute, UnaryRoutes } from "./unary-routes.js";

export interface GrpcFastPathOptions {
  routes: UnaryRoutes;
  interceptors: Interceptor[];
  contextValues?: (req: http2.Http2ServerRequest) => ContextValues;
  readMaxBytes?: number;
  writeMaxBytes?: number;
  maxTimeoutMs?: number;
  /** Told of a call that failed before the interceptors saw it (bad framing, size, a message that does not parse). */
  onProtocolFailure?: (failure: ProtocolFailure) => void;
}

/** Serves a request if it is a unary gRPC call the fast path takes; false leaves it untouched for Connect. */
export type GrpcFastPath = (req: unknown, res: unknown) => boolean;

let served = 0;
/** Calls answered by the fast path in this process (tests check it is really in use). */
export const grpcFastPathServed = () => served;

const CONTENT_TYPE_PROTO = "application/grpc+proto";
const http2constants = http2.constants;

export function createGrpcFastPath(options: GrpcFastPathOptions): GrpcFastPath {
  // Connect's node adapter defaults, so negotiation answers as Connect would.
  const opt = validateUniversalHandlerOptions({
    acceptCompression: [compressionGzip, compressionBrotli],
    readMaxBytes: options.readMaxBytes,
    writeMaxBytes: options.writeMaxBytes,
    maxTimeoutMs: options.maxTimeoutMs,
    interceptors: options.interceptors,
  });
  const prepared = new Map<string, Prepared>();
  for (const [path, route] of options.routes) {
    const lookup = createMethodSerializationLookup(route.method, opt.binaryOptions, opt.jsonOptions, opt);
    prepared.set(path, { route, output: lookup.getO(true) });
  }
  const env: Env = { ...opt, contextValues: options.contextValues, onProtocolFailure: options.onProtocolFailure };

  return (anyReq, anyRes) => {
    const req = anyReq as http2.Http2ServerRequest;
    if (req.httpVersionMajor !== 2 || req.method !== "POST") return false;
    const h = req.headers;
    const ct = h["content-type"];
    if (ct !== "application/grpc" && ct !== CONTENT_TYPE_PROTO) return false;
    const enc = h["grpc-encoding"];
    if (enc !== undefined && enc !== "identity") return false;
    const p = prepared.get(req.url);
    if (!p) return false;
    served++;
    void serve(p, env, req, anyRes as http2.Http2ServerResponse);
    return true;
  };
}

interface Prepared {
  route: UnaryRoute;
  output: { serialize(data: unknown): Uint8Array };
}

type Env = ReturnType<typeof validateUniversalHandlerOptions> & Pick<GrpcFastPathOptions, "contextValues" | "onProtocolFailure">;

const DONE = new ConnectError("call completed", Code.Canceled);

/**
 * Per-call state. `signal` is created only when someone reads it (Connect
 * builds one for every call); when it is, it aborts at the deadline
 * (DEADLINE_EXCEEDED, as Connect's), when the client goes away, and at the
 * end of the call.
 */
class Call {
  private controller?: AbortController;
  private timer?: NodeJS.Timeout;
  private ended = false;
  readonly deadline: number | undefined;

  constructor(
    private readonly res: http2.Http2ServerResponse,
    timeoutMs: number | undefined,
  ) {
    this.deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    const c = new AbortController();
    this.controller = c;
    if (this.ended) {
      c.abort(DONE);
      return c.signal;
    }
    if (this.deadline !== undefined) {
      const left = this.deadline - Date.now();
      const timedOut = () => c.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
      if (left <= 0) timedOut();
      else this.timer = setTimeout(timedOut, left);
    }
    this.res.once("close", () => {
      if (!c.signal.aborted) c.abort(this.ended ? DONE : new ConnectError("operation was aborted via signal", Code.Aborted));
    });
    return c.signal;
  }

  remainingMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - Date.now();
  }

  end(err?: unknown): void {
    this.ended = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.controller && !this.controller.signal.aborted) this.controller.abort(err ?? DONE);
  }
}

async function serve(p: Prepared, env: Env, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
  const h = req.headers;
  const timeout = parseTimeout((h["grpc-timeout"] as string | undefined) ?? null, env.maxTimeoutMs);
  const compression = compressionNegotiate(env.acceptCompression, null, (h["grpc-accept-encoding"] as string | undefined) ?? null, "grpc-accept-encoding");
  const call = new Call(res, timeout.timeoutMs);
  const responseHeader = LightHeaders.of("content-type", CONTENT_TYPE_PROTO);
  const responseTrailer = LightHeaders.of("grpc-status", "0");
  if (compression.response) responseHeader.set("grpc-encoding", compression.response.name);
  const values = env.contextValues ? env.contextValues(req) : undefined;
  let reached = false;
  try {
    const body = await readBody(req, env.readMaxBytes);
    if (timeout.error) throw timeout.error;
    const input = parseBinary(p.route.method.input, singleMessage(body, env.readMaxBytes));
    const requestHeader = LightHeaders.fromNode(h);
    reached = true;
    const method = p.route.method;
    const service = method.parent;
    const url = `http://${req.authority}${req.url}`;
    const context: HandlerContext = {
      method,
      service,
      get signal() {
        return call.signal;
      },
      timeoutMs() {
        return call.remainingMs();
      },
      requestMethod: "POST",
      requestHeader,
      responseHeader,
      responseTrailer,
      protocolName: "grpc",
      values: values!,
      url,
    };
    // Connect's invokeUnaryImplementation, without its iterables. A method, not an arrow in a const:
    // tsx (esbuild keepNames) wraps every named arrow in __name(), a defineProperty per call.
    const impl = {
      async invoke(r: UnaryRequest): Promise<UnaryResponse> {
        const ctx = r.header === requestHeader && r.contextValues === values && r.service === service ? context : { ...context, service: r.service, requestHeader: r.header, values: r.contextValues, get signal() { return r.signal; } };
        const message = create(method.output, (await p.route.impl(r.message, ctx)) as never);
        return { stream: false, message, method, service, header: responseHeader, trailer: responseTrailer };
      },
    };
    let next = impl.invoke as (r: UnaryRequest) => Promise<UnaryResponse>;
    for (let i = env.interceptors.length - 1; i >= 0; i--) next = env.interceptors[i](next as never) as typeof next;
    const request: UnaryRequest = {
      stream: false,
      message: input as never,
      method,
      service,
      requestMethod: "POST",
      url,
      get signal() {
        return call.signal;
      },
      header: requestHeader,
      contextValues: values!,
    };
    const out = await next(request);
    copyHeaders(out.header, responseHeader);
    copyHeaders(out.trailer, responseTrailer);
    const frame = await envelope(p.output.serialize(out.message), compression.response, env.compressMinBytes);
    call.end();
    respond(res, responseHeader, responseTrailer, frame);
  } catch (e) {
    call.end(e);
    if (isBodyTooLarge(e)) stopReading(req, res);
    if (!reached && values) responseHeader.set("x-request-id", values.get(requestIdKey));
    if (!reached && e instanceof ConnectError) {
      env.onProtocolFailure?.({ method: p.route.method, protocol: "grpc", code: e.code, message: e.rawMessage, requestId: values?.get(requestIdKey), contentType: h["content-type"] });
    }
    setGrpcStatus(responseTrailer, e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e));
    respond(res, responseHeader, responseTrailer, undefined);
  }
}

/**
 * The request body, whole, and never more than one envelope of readMaxBytes: a frame announcing
 * more fails as soon as its header arrives, and so does a body running past the one frame it may
 * hold (a small frame followed by megabytes of junk). Reading then stops (`stopReading` cuts the
 * stream once the status is sent) so nothing past the limit is held. Listeners are inline: named
 * arrows would each cost a __name() call (see `impl` above).
 */
function readBody(req: http2.Http2ServerRequest, readMaxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let checked = false;
    let settled = false;
    req.on("data", (chunk: Buffer) => {
      if (settled) return;
      chunks.push(chunk);
      size += chunk.length;
      let tooLarge: ConnectError | undefined;
      if (size > readMaxBytes + 5) tooLarge = bodyTooLarge(readMaxBytes + 5);
      else if (!checked && size >= 5) {
        checked = true;
        const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
        const length = head.readUInt32BE(1);
        if (length > readMaxBytes) tooLarge = messageTooLarge(length, readMaxBytes);
      }
      if (tooLarge) {
        settled = true;
        chunks.length = 0;
        req.removeAllListeners("data");
        req.pause();
        reject(tooLarge);
      }
    });
    req.on("end", () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on("error", (err: Error) => {
      if (settled) return;
      settled = true;
      reject(new ConnectError(err.message, Code.Aborted));
    });
  });
}

/** Exactly one uncompressed message, with Connect's errors for everything else. */
function singleMessage(body: Buffer, readMaxBytes: number): Uint8Array {
  if (body.length === 0) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  if (body.length < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  const flags = body[0];
  const length = body.readUInt32BE(1);
  if (length > readMaxBytes) throw messageTooLarge(length, readMaxBytes);
  if (body.length < 5 + length) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  const rest = body.length - 5 - length;
  const second = rest >= 5 ? body.readUInt32BE(5 + length + 1) : undefined;
  if (second !== undefined && second > readMaxBytes) throw messageTooLarge(second, readMaxBytes);
  if (flags & 0b1111_1110) throw malformed(`envelope flags 0x${flags.toString(16).padStart(2, "0")} are not valid in a request`);
  if ((flags & 0b00000001) === 0b00000001) throw malformed("message flagged compressed but the request names no encoding");
  if (rest > 0) {
    // Connect reads a second envelope before refusing it; a partial one is an incomplete envelope.
    if (second === undefined || rest < 5 + second) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
  }
  return body.subarray(5, 5 + length);
}

async function envelope(data: Uint8Array, compression: Compression | null, compressMinBytes: number): Promise<Buffer> {
  let flags = 0;
  if (compression && data.byteLength >= compressMinBytes) {
    data = await compression.compress(data);
    flags = 0b00000001;
  }
  const frame = Buffer.allocUnsafe(5 + data.byteLength);
  frame[0] = flags;
  frame.writeUInt32BE(data.byteLength, 1);
  frame.set(data, 5);
  return frame;
}

/** As Connect's node adapter writes a gRPC answer: headers, the body if any, trailers. */
function respond(res: http2.Http2ServerResponse, header: LightHeaders, trailer: LightHeaders, body: Buffer | undefined): void {
  if (res.stream.destroyed || res.headersSent) return;
  try {
    res.writeHead(200, header.toNode());
    res.addTrailers(trailer.toNode());
    if (body) res.end(body);
    else res.end();
  } catch {
    // The client is gone, or a header value Node refuses: end the stream rather than leave the call hanging.
    if (!res.stream.destroyed) res.stream.close(http2constants.NGHTTP2_INTERNAL_ERROR);
  }
}

function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  const keys: string[] = [];
  to.forEach((_, k) => keys.push(k));
  for (const k of keys) to.delete(k);
  from.forEach((v, k) => to.append(k, v));
}
