/**
 * `grpc-message` as the gRPC spec (PROTOCOL-HTTP2.md) encodes it: UTF-8, and
 * only bytes outside 0x20–0x7E, plus '%' itself, percent-encoded. Connect
 * uses encodeURIComponent, which also escapes ':', '/', ';', ' ' and more;
 * grpc-js and grpc-go decode only what the spec says, so their users read
 * `%3A` and `%2F` in messages. Connect clients decode either form.
 */
import type { ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

const plain = (b: number) => b >= 0x20 && b <= 0x7e && b !== 0x25;

export function encodeGrpcMessage(message: string): string {
  let simple = true;
  for (let i = 0; i < message.length; i++) {
    if (!plain(message.charCodeAt(i))) {
      simple = false;
      break;
    }
  }
  if (simple) return message;
  let out = "";
  for (const b of Buffer.from(message, "utf8")) out += plain(b) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

/** Connect's setTrailerStatus (status, details), with the message encoded as the spec says. */
export function setGrpcStatus(trailer: Headers, error: ConnectError | undefined): Headers {
  setTrailerStatus(trailer, error);
  if (error && trailer.has("grpc-message")) trailer.set("grpc-message", encodeGrpcMessage(error.rawMessage));
  return trailer;
}

/** Re-encodes a grpc-message Connect wrote (encodeURIComponent) in place. */
export function fixGrpcMessage(h: Headers | undefined): void {
  const m = h?.get("grpc-message");
  if (!h || !m) return;
  let decoded: string;
  try {
    decoded = decodeURIComponent(m);
  } catch {
    return;
  }
  h.set("grpc-message", encodeGrpcMessage(decoded));
}
