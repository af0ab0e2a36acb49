/**
 * Reading a request body with a hard byte limit, and checking that it decodes.
 *
 * A body is read only up to the limit: past it the read stops (the request is
 * paused, never drained into memory) and the caller answers
 * RESOURCE_EXHAUSTED, then cuts the rest off (`stopReading`). Then the bytes
 * are decoded as the protocol says (envelopes, gzip/br, protobuf) so that a
 * corrupt, truncated or undecodable body is answered INVALID_ARGUMENT with a
 * precise message rather than Connect's INTERNAL (Connect treats a protobuf
 * parse error and a truncated gzip stream as server faults).
 */
import http2 from "node:http2";
import type http from "node:http";
import { type DescEnum, type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { invalidArgument } from "../errors.js";

/** A Node request of either HTTP version. */
export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
/** A Node response of either HTTP version. */
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Marks an error raised because a body passed the limit (so HTTP answers 413, not 429). */
export const BODY_TOO_LARGE = Symbol("body too large");

export function bodyTooLarge(limit: number, what = "request body", message = `${what} is larger than the limit of ${limit} bytes`): ConnectError {
  const err = new ConnectError(message, Code.ResourceExhausted);
  (err as unknown as Record<symbol, boolean>)[BODY_TOO_LARGE] = true;
  return err;
}

/** An envelope announcing more than the limit, in Connect's words. */
export function messageTooLarge(length: number, readMaxBytes: number): ConnectError {
  return bodyTooLarge(readMaxBytes, "", `message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`);
}

export function isBodyTooLarge(err: unknown): boolean {
  return err instanceof ConnectError && (err as unknown as Record<symbol, boolean>)[BODY_TOO_LARGE] === true;
}

/**
 * The whole body, at most `limit` bytes. A declared content-length over the
 * limit fails before a byte is read; otherwise reading stops at the first
 * chunk past it. Either way the request is left paused: call `stopReading`
 * once the answer is written.
 */
export function readBodyCapped(req: NodeRequest, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    req.pause();
    return Promise.reject(bodyTooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        done();
        chunks.length = 0;
        req.pause();
        reject(bodyTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      done();
      reject(new ConnectError(`request body could not be read: ${err.message}`, Code.Aborted));
    };
    const onAborted = () => onError(new Error("client went away"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onAborted);
  });
}

/**
 * After answering a request whose body was not read to its end: HTTP/2 resets
 * the stream once the status is on its way (trailers handed over, or the
 * answer finished) so the client stops sending; HTTP/1.1 closes the
 * connection after the answer. CANCEL, not NO_ERROR: Node holds a NO_ERROR
 * reset until the stream finishes, which a client blocked on flow control
 * never lets happen. Clients have read the status from the trailers by then.
 */
export function stopReading(req: NodeRequest, res: NodeResponse): void {
  if ("stream" in res) {
    const stream = res.stream;
    const reset = () => {
      if (!stream.destroyed && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    const soon = () => setImmediate(reset);
    stream.once("wantTrailers", soon);
    res.once("finish", soon);
    // An answer not written by then is not coming: do not hold the stream open for it.
    setTimeout(reset, 10_000).unref();
    return;
  }
  if (!res.headersSent) res.setHeader("connection", "close");
  const socket = req.socket;
  if (!socket) return;
  // Node closes a `connection: close` socket as soon as the answer is written (destroySoon). With the
  // client's upload still arriving, that close sends an RST, and the client's kernel drops the answer
  // it has not read yet: a loaded client saw no 413 at all. Close lingering instead: the answer and a
  // FIN go out now, the rest of the upload stays unread (the kernel's buffers bound it), and the socket
  // goes when the client closes or after LINGER_MS.
  let lingering = false;
  socket.destroySoon = () => {
    if (lingering) return;
    lingering = true;
    socket.end();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
  };
  res.once("finish", () => socket.destroySoon());
}

/** How long a connection cut off by `stopReading` stays open after its answer (as in Apache's lingering close). */
export const LINGER_MS = 2_000;

/** How a request body is framed and compressed, from its headers. */
export interface BodyFormat {
  /** gRPC, gRPC-Web and Connect streaming: 5-byte envelopes. Connect unary: the bare message. */
  enveloped: boolean;
  binary: boolean;
  /** The request's compression, null for identity, undefined for one we do not check (Connect answers it). */
  compression: Compression | null | undefined;
}

const compressions: Record<string, Compression> = { gzip: compressionGzip, br: compressionBrotli };

function compressionOf(name: string | undefined | string[]): Compression | null | undefined {
  if (name === undefined || name === "identity" || name === "") return null;
  return typeof name === "string" ? compressions[name] : undefined;
}

/** The body format of a request, or undefined for one Connect refuses anyway (415) or we do not check. */
export function bodyFormat(headers: http.IncomingHttpHeaders): BodyFormat | undefined {
  const ct = (headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
  const m = /^application\/(grpc-web|grpc|connect)(?:\+(proto|json))?$/.exec(ct);
  if (m) {
    if (m[1] === "connect" && m[2] === undefined) return undefined;
    const enc = m[1] === "connect" ? headers["connect-content-encoding"] : headers["grpc-encoding"];
    return { enveloped: true, binary: m[2] !== "json", compression: compressionOf(enc) };
  }
  if (ct === "application/proto" || ct === "application/json") {
    return { enveloped: false, binary: ct === "application/proto", compression: compressionOf(headers["content-encoding"]) };
  }
  return undefined;
}

/** A client's fault in the body: INVALID_ARGUMENT with what was wrong. */
export function malformed(problem: string): ConnectError {
  return new ConnectError(`malformed request: ${problem}`, Code.InvalidArgument);
}

/** Decompresses one message; corrupt or truncated data is the client's fault, too large is RESOURCE_EXHAUSTED. */
export async function decompress(c: Compression, data: Uint8Array, readMaxBytes: number): Promise<Uint8Array> {
  try {
    return await c.decompress(data, readMaxBytes);
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.ResourceExhausted) throw bodyTooLarge(readMaxBytes, "decompressed message");
    throw malformed(`${c.name} data is corrupt or truncated`);
  }
}

/** Parses a binary message; anything it cannot read (bad tag, premature end, invalid UTF-8) is the client's fault. */
export function parseBinary<D extends DescMessage>(desc: D, data: Uint8Array) {
  try {
    return fromBinary(desc, data);
  } catch (e) {
    throw malformed(`not a valid ${desc.typeName}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Checks that every message in a body decodes as `input`: envelopes whole,
 * flags valid for a request, compression readable, binary protobuf parsable.
 * JSON is left to Connect (it answers JSON errors as INVALID_ARGUMENT itself)
 * but for enum names it does not know (checkJsonEnums),
 * and so are encodings we do not know (UNIMPLEMENTED).
 */
export async function checkDecodable(body: Uint8Array, format: BodyFormat, input: DescMessage, readMaxBytes: number): Promise<void> {
  if (format.compression === undefined) return;
  if (!format.enveloped) {
    const data = format.compression ? await decompress(format.compression, body, readMaxBytes) : body;
    if (format.binary) parseBinary(input, data);
    else checkJsonEnums(input, data);
    return;
  }
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let off = 0;
  while (off < body.length) {
    // Connect's own messages for these, so both paths answer alike.
    if (body.length - off < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    const flags = body[off];
    const length = view.getUint32(off + 1);
    if (length > readMaxBytes) throw messageTooLarge(length, readMaxBytes);
    if (off + 5 + length > body.length) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    let data = body.subarray(off + 5, off + 5 + length);
    off += 5 + length;
    // End-stream (0x02) and trailer (0x80) frames go from server to client only.
    if (flags & 0b1111_1110) throw malformed(`envelope flags 0x${flags.toString(16).padStart(2, "0")} are not valid in a request`);
    if (flags & 1) {
      if (!format.compression) throw malformed("message flagged compressed but the request names no encoding");
      data = await decompress(format.compression, data, readMaxBytes);
    }
    if (format.binary) parseBinary(input, data);
    else checkJsonEnums(input, data);
  }
}

/**
 * Refuses an enum value given by a name the enum does not have. Connect
 * reads JSON ignoring what it does not know, which turns an unknown enum
 * name into the field's default (a typo of KEY_ENVIRONMENT_TEST made a live
 * project); over binary the number is kept and protovalidate's
 * `defined_only` refuses it. This makes JSON answer the same:
 * INVALID_ARGUMENT naming the field. Unknown fields stay ignored, and JSON
 * that does not parse is left to Connect.
 */
export function checkJsonEnums(input: DescMessage, data: Uint8Array): void {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return;
  }
  const problem = unknownEnumIn(input, json, "");
  if (problem) throw invalidArgument(problem.field, problem.problem);
}

interface EnumProblem {
  field: string;
  problem: string;
}

function unknownEnumIn(desc: DescMessage, json: unknown, prefix: string): EnumProblem | undefined {
  // Well-known types have JSON forms of their own (and no enum a client names).
  if (desc.typeName.startsWith("google.protobuf.") || typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const obj = json as Record<string, unknown>;
  for (const field of desc.fields) {
    const value = field.jsonName in obj ? obj[field.jsonName] : obj[field.name];
    if (value === undefined || value === null) continue;
    const path = `${prefix}${field.name}`;
    let problem: EnumProblem | undefined;
    switch (field.fieldKind) {
      case "enum":
        problem = unknownName(field.enum, value, path);
        break;
      case "message":
        problem = unknownEnumIn(field.message, value, `${path}.`);
        break;
      case "list":
        if (!Array.isArray(value)) break;
        for (const item of value) {
          if (field.listKind === "enum") problem ??= unknownName(field.enum, item, path);
          else if (field.listKind === "message") problem ??= unknownEnumIn(field.message, item, `${path}.`);
        }
        break;
      case "map":
        if (typeof value !== "object" || Array.isArray(value)) break;
        for (const item of Object.values(value as Record<string, unknown>)) {
          if (field.mapKind === "enum") problem ??= unknownName(field.enum, item, path);
          else if (field.mapKind === "message") problem ??= unknownEnumIn(field.message, item, `${path}.`);
        }
        break;
    }
    if (problem) return problem;
  }
  return undefined;
}

function unknownName(e: DescEnum, value: unknown, path: string): EnumProblem | undefined {
  if (typeof value !== "string" || e.typeName === "google.protobuf.NullValue" || e.values.some((v) => v.name === value)) return undefined;
  const names = e.values.filter((v) => v.number !== 0).map((v) => v.name);
  return { field: path, problem: `${JSON.stringify(value.slice(0, 64))} is not a value of ${e.typeName} (one of ${names.join(", ")})` };
}
