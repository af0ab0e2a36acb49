/**
 * Keyset pagination (AIP-158): page_size 0 means the default, and the page
 * token is an opaque cursor of the last row's sort key. Queries always filter
 * by the caller's project, so a tampered cursor can only move within the
 * caller's own rows; it is still checked for shape.
 */
import { invalidArgument } from "../errors.js";

export const DEFAULT_PAGE_SIZE = 50;

/** The page size to use for a request's page_size (validated 0..1000 by the contract). */
export function pageSize(requested: number): number {
  return requested > 0 ? requested : DEFAULT_PAGE_SIZE;
}

export function encodePageToken(cursor: Array<string | number>): string {
  return Buffer.from(JSON.stringify(cursor)).toString("base64url");
}

/**
 * Decodes a page token whose cursor has the given element types;
 * INVALID_ARGUMENT for anything else. Undefined for the first page.
 */
export function decodePageToken(token: string, shape: Array<"string" | "number">): Array<string | number> | undefined {
  if (token === "") return undefined;
  let cursor: unknown;
  try {
    cursor = JSON.parse(Buffer.from(token, "base64url").toString());
  } catch {
    cursor = undefined;
  }
  if (!Array.isArray(cursor) || cursor.length !== shape.length || cursor.some((v, i) => typeof v !== shape[i])) {
    throw invalidArgument("page_token", "is not a token from a previous page of this list");
  }
  return cursor as Array<string | number>;
}

/** Splits a query's rows (fetched with limit size + 1) into the page and the next page's token. */
export function pageOf<T>(rows: T[], size: number, cursorOf: (row: T) => Array<string | number>): { items: T[]; nextPageToken: string } {
  if (rows.length <= size) return { items: rows, nextPageToken: "" };
  const items = rows.slice(0, size);
  return { items, nextPageToken: encodePageToken(cursorOf(items[items.length - 1])) };
}
