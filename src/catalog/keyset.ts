/**
 * What the catalog's lists share: their orders and default statuses, keyset
 * pagination (rows ordered by one sort column or by id alone, then by id; the
 * opaque page token holds the last row's key), and exact matching inside the
 * JSON arrays the tables store.
 */
import { type SelectQueryBuilder, type SqlBool, sql } from "kysely";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";

/** A list order: a numeric column (price, create_time) or none, ascending or descending, ties by id. */
export interface KeysetOrder {
  column?: string;
  desc: boolean;
}

/** The orders of a catalog list (order_by): `name` (the default), `create_time desc`, or by a price column, cheapest first. */
export function catalogOrders<P extends string>(priceColumn: P): Record<"name" | "create_time desc" | P, KeysetOrder> {
  const orders: Record<string, KeysetOrder> = {
    name: { desc: false },
    "create_time desc": { column: "create_time", desc: true },
    [priceColumn]: { column: priceColumn, desc: false },
  };
  return orders as Record<"name" | "create_time desc" | P, KeysetOrder>;
}

/** The statuses a catalog list shows: the one asked for, or else the usable ones (active and deprecated). */
export function listedStatuses(status: string | undefined): string[] {
  return status ? [status] : ["active", "deprecated"];
}

/** One page of `q` in `order`, after the page token's row; INVALID_ARGUMENT for a token of another order. */
export async function keysetPage<DB, TB extends keyof DB, R>(q: SelectQueryBuilder<DB, TB, R>, idColumn: string, order: KeysetOrder, requestedSize: number, token: string) {
  const n = pageSize(requestedSize);
  const { column, desc } = order;
  const cmp = desc ? "<" : ">";
  const direction = desc ? "desc" : "asc";
  const id = sql.ref(idColumn);
  const after = decodePageToken(token, column ? ["number", "string"] : ["string"]);
  if (after && column) {
    const sort = sql.ref(column);
    q = q.where((eb) => eb.or([eb(sort, cmp, after[0]), eb.and([eb(sort, "=", after[0]), eb(id, cmp, after[1])])]));
  } else if (after) {
    q = q.where((eb) => eb(id, cmp, after[0]));
  }
  if (column) q = q.orderBy(sql.ref(column), direction);
  const rows = await q.orderBy(id, direction).limit(n + 1).execute();
  const value = (r: R, c: string) => (r as Record<string, string | number>)[c];
  return pageOf(rows, n, (r) => (column ? [value(r, column), value(r, idColumn)] : [value(r, idColumn)]));
}

/** True where the text column contains `value` literally (LIKE with `%` and `_` escaped). */
export function containsLiterally(column: string, value: string) {
  const pattern = `%${value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  return sql<SqlBool>`${sql.ref(column)} LIKE ${pattern} ESCAPE '\\'`;
}
