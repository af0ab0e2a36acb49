/** Queries on model and model_price. Each takes the database or a transaction. */
import type { Insertable, Selectable, Updateable } from "kysely";
import type { Db } from "../db/database.js";
import { prepared } from "../db/prepared.js";
import type { ModelTable } from "./catalog-tables.js";
import { type KeysetOrder, keysetPage } from "./keyset.js";

export type ModelRow = Selectable<ModelTable>;

export interface ModelFilter {
  provider?: string;
  /** Only these statuses. */
  statuses: string[];
  visibility?: string;
}

const findModelQuery = prepared((db, modelId: string) => db.selectFrom("model").selectAll().where("model_id", "=", modelId));

/** A model by id (a prepared query: metering prices and splits by it on every record). */
export async function findModel(db: Db, modelId: string): Promise<ModelRow | undefined> {
  return (await findModelQuery(db, modelId))[0];
}

export async function insertModel(db: Db, row: Insertable<ModelTable>): Promise<void> {
  await db.insertInto("model").values(row).execute();
}

export async function updateModel(db: Db, modelId: string, changes: Updateable<ModelTable>): Promise<void> {
  await db.updateTable("model").set(changes).where("model_id", "=", modelId).execute();
}

/** Deletes a model and its price history (usage records keep the prices they were charged). */
export async function deleteModel(db: Db, modelId: string): Promise<void> {
  await db.deleteFrom("model_price").where("model_id", "=", modelId).execute();
  await db.deleteFrom("model").where("model_id", "=", modelId).execute();
}

/** Models a project can see (platform-wide, public, its own), filtered, one keyset page. */
export function listModels(db: Db, projectId: string, filter: ModelFilter, order: KeysetOrder, size: number, token: string) {
  let q = db
    .selectFrom("model")
    .selectAll()
    .where((eb) => eb.or([eb("owner_project", "is", null), eb("visibility", "=", "public"), eb("owner_project", "=", projectId)]))
    .where("status", "in", filter.statuses);
  if (filter.provider) q = q.where("provider", "=", filter.provider);
  if (filter.visibility) q = q.where("visibility", "=", filter.visibility);
  return keysetPage(q, "model_id", order, size, token);
}

/** Records the price that applies from `at` on; a second change in the same millisecond replaces the first. */
export async function insertPrice(db: Db, modelId: string, at: number, inputPrice: number, outputPrice: number): Promise<void> {
  await db
    .insertInto("model_price")
    .values({ model_id: modelId, effective_from: at, input_price: inputPrice, output_price: outputPrice })
    .onConflict((oc) => oc.columns(["model_id", "effective_from"]).doUpdateSet({ input_price: inputPrice, output_price: outputPrice }))
    .execute();
}

/** The price that applied at `at`: the latest one in effect from then or before. */
export function priceAt(db: Db, modelId: string, at: number) {
  return db
    .selectFrom("model_price")
    .select(["input_price", "output_price", "effective_from"])
    .where("model_id", "=", modelId)
    .where("effective_from", "<=", at)
    .orderBy("effective_from", "desc")
    .limit(1)
    .executeTakeFirst();
}
