/** Etags of catalog resources: a digest of the stored row, so any change makes a new one. */
import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { withReason } from "../errors.js";

export function etagOf(row: object): string {
  const canonical = JSON.stringify(row, Object.keys(row).sort());
  return createHash("sha256").update(canonical).digest("base64url").slice(0, 22);
}

/** ABORTED when the client sent an etag and the row has changed since that read (AIP-154). */
export function checkEtag(name: string, row: object, etag: string): void {
  if (etag !== "" && etag !== etagOf(row)) {
    throw withReason(Code.Aborted, `${name} has changed since it was read (stale etag); read it again`, "ETAG_MISMATCH");
  }
}
