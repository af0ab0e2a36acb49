/**
 * Raw RPC requests for hostile-input tests: any bytes, any headers, over a
 * shared HTTP/2 session (gRPC) or keep-alive HTTP/1.1 (Connect, gRPC-Web),
 * with the outcome read back as a Connect code name whatever the protocol.
 */
import http from "node:http";
import http2 from "node:http2";

export interface RawAnswer {
  httpStatus: number;
  /** The RPC outcome as Connect's lower-case code name ("ok", "invalid_argument", …), or "http_<status>" when none was sent. */
  code: string;
  message: string;
}

const GRPC_CODES = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied",
  "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
];

export const codeName = (status: string | undefined) => (status === undefined ? undefined : GRPC_CODES[Number(status)] ?? `grpc_${status}`);

/** One HTTP/2 session for many gRPC requests. */
export class H2Client {
  private session: http2.ClientHttp2Session;
  constructor(private readonly url: string) {
    this.session = http2.connect(url);
    this.session.on("error", () => undefined);
  }

  private live(): http2.ClientHttp2Session {
    if (this.session.closed || this.session.destroyed) {
      this.session = http2.connect(this.url);
      this.session.on("error", () => undefined);
    }
    return this.session;
  }

  request(path: string, headers: Record<string, string>, body: Buffer): Promise<RawAnswer> {
    return new Promise((resolve, reject) => {
      const req = this.live().request({ ":method": "POST", ":path": path, te: "trailers", ...headers });
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      req.setTimeout(30_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
      req.on("response", (h) => (head = h));
      req.on("trailers", (t) => (trailers = t));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("close", () => {
        const status = Number(head[":status"] ?? 0);
        const grpc = (trailers["grpc-status"] ?? head["grpc-status"]) as string | undefined;
        const message = decodeURIComponent(String(trailers["grpc-message"] ?? head["grpc-message"] ?? ""));
        if (!status) return reject(new Error(`stream closed without an answer (rst ${req.rstCode})`));
        resolve({ httpStatus: status, code: codeName(grpc) ?? `http_${status}`, message });
      });
      req.on("error", () => undefined);
      req.end(body);
    });
  }

  close(): void {
    this.session.close();
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** An HTTP/1.1 POST; the code comes from gRPC-Web trailers, a Connect error body or end-stream message. */
export function h1Request(url: string, path: string, headers: Record<string, string>, body: Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method: "POST", headers: { ...headers, "content-length": String(body.length) }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(readH1Answer(res.statusCode ?? 0, res.headers, Buffer.concat(chunks))));
      res.on("error", reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

export function readH1Answer(status: number, headers: http.IncomingHttpHeaders, body: Buffer): RawAnswer {
  const ct = String(headers["content-type"] ?? "");
  if (headers["grpc-status"] !== undefined) return { httpStatus: status, code: codeName(String(headers["grpc-status"]))!, message: String(headers["grpc-message"] ?? "") };
  if (ct.startsWith("application/grpc-web")) {
    // The trailer frame (flag 0x80) is last.
    let off = 0;
    while (off + 5 <= body.length) {
      const flags = body[off];
      const len = body.readUInt32BE(off + 1);
      const data = body.subarray(off + 5, off + 5 + len);
      off += 5 + len;
      if (flags & 0x80) {
        const fields = Object.fromEntries(data.toString().split("\r\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
        return { httpStatus: status, code: codeName(fields["grpc-status"]) ?? "missing", message: decodeURIComponent(fields["grpc-message"] ?? "") };
      }
    }
    return { httpStatus: status, code: `http_${status}`, message: "" };
  }
  if (ct.startsWith("application/connect+")) {
    let off = 0;
    while (off + 5 <= body.length) {
      const flags = body[off];
      const len = body.readUInt32BE(off + 1);
      const data = body.subarray(off + 5, off + 5 + len);
      off += 5 + len;
      if (flags & 0x02) {
        const end = JSON.parse(data.toString()) as { error?: { code: string; message?: string } };
        return { httpStatus: status, code: end.error?.code ?? "ok", message: end.error?.message ?? "" };
      }
    }
    return { httpStatus: status, code: `http_${status}`, message: "" };
  }
  if (ct.startsWith("application/json") && status !== 200) {
    try {
      const e = JSON.parse(body.toString()) as { code?: string; message?: string };
      return { httpStatus: status, code: e.code ?? `http_${status}`, message: e.message ?? "" };
    } catch {
      return { httpStatus: status, code: `http_${status}`, message: body.toString().slice(0, 200) };
    }
  }
  return { httpStatus: status, code: status === 200 ? "ok" : `http_${status}`, message: "" };
}
