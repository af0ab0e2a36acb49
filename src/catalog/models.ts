/**
 * The model catalog. Platform-wide models (no owner) are managed by the
 * developers and admins of the platform project; a project's own models by
 * its developers and admins. Callers see platform models, public models, and
 * their own; anything else is NOT_FOUND.
 */
import type { Selectable } from "kysely";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import type { Caller } from "../accounts/accounts.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { alreadyExists, notFound, permissionDenied } from "../errors.js";
import type { ModelTable } from "./catalog-tables.js";

export type ModelRow = Selectable<ModelTable>;

export interface ModelFields {
  displayName: string;
  description: string;
  contextWindow: number;
  inputPrice: number;
  outputPrice: number;
  status: string;
  visibility: string;
}

export const modelName = (id: string) => `models/${id}`;
const idOf = (nameOrId: string) => (nameOrId.startsWith("models/") ? nameOrId.slice("models/".length) : nameOrId);

export type ModelOrder = "name" | "create_time desc" | "input_price";

export class Models {
  constructor(
    private readonly database: Database,
    private readonly clock: Clock,
    private readonly platformProject: string,
  ) {}

  /** The owner a model created by this caller gets: none for the platform project. */
  private ownerFor(caller: Caller): string | null {
    return caller.projectId === this.platformProject ? null : caller.projectId;
  }

  private visibleTo(row: ModelRow, projectId: string): boolean {
    return row.owner_project === null || row.visibility === "public" || row.owner_project === projectId;
  }

  async create(caller: Caller, id: string, f: ModelFields): Promise<ModelRow> {
    const now = this.clock.now();
    const row: ModelRow = {
      model_id: id,
      owner_project: this.ownerFor(caller),
      provider: id.split("/")[0],
      display_name: f.displayName,
      description: f.description,
      context_window: f.contextWindow,
      input_price: f.inputPrice,
      output_price: f.outputPrice,
      status: f.status || "active",
      visibility: f.visibility || "private",
      create_time: now,
      update_time: now,
    };
    return this.database.transaction(async (tx) => {
      // ALREADY_EXISTS only for a name the caller can see; another project's private name looks taken the same way.
      if (await tx.selectFrom("model").select("model_id").where("model_id", "=", id).executeTakeFirst()) throw alreadyExists(`model "${modelName(id)}"`);
      await tx.insertInto("model").values(row).execute();
      return row;
    });
  }

  async get(caller: Caller, name: string): Promise<ModelRow> {
    const row = await this.database.db.selectFrom("model").selectAll().where("model_id", "=", idOf(name)).executeTakeFirst();
    if (!row || !this.visibleTo(row, caller.projectId)) throw notFound(`model "${name}"`);
    return row;
  }

  async list(caller: Caller, filter: { provider?: string; status?: string; visibility?: string }, order: ModelOrder, size: number, token: string) {
    const n = pageSize(size);
    let q = this.database.db
      .selectFrom("model")
      .selectAll()
      .where((eb) => eb.or([eb("owner_project", "is", null), eb("visibility", "=", "public"), eb("owner_project", "=", caller.projectId)]));
    if (filter.provider) q = q.where("provider", "=", filter.provider);
    if (filter.status) q = q.where("status", "=", filter.status);
    if (filter.visibility) q = q.where("visibility", "=", filter.visibility);
    if (order === "input_price") {
      const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
      if (after) q = q.where((eb) => eb.or([eb("input_price", ">", after[0]), eb.and([eb("input_price", "=", after[0]), eb("model_id", ">", after[1])])]));
      const rows = await q.orderBy("input_price").orderBy("model_id").limit(n + 1).execute();
      return pageOf(rows, n, (r) => [r.input_price, r.model_id]);
    }
    if (order === "create_time desc") {
      const after = decodePageToken(token, ["number", "string"]) as [number, string] | undefined;
      if (after) q = q.where((eb) => eb.or([eb("create_time", "<", after[0]), eb.and([eb("create_time", "=", after[0]), eb("model_id", "<", after[1])])]));
      const rows = await q.orderBy("create_time", "desc").orderBy("model_id", "desc").limit(n + 1).execute();
      return pageOf(rows, n, (r) => [r.create_time, r.model_id]);
    }
    const after = decodePageToken(token, ["string"]) as [string] | undefined;
    if (after) q = q.where("model_id", ">", after[0]);
    const rows = await q.orderBy("model_id").limit(n + 1).execute();
    return pageOf(rows, n, (r) => [r.model_id]);
  }

  async update(caller: Caller, name: string, paths: string[], f: ModelFields): Promise<ModelRow> {
    return this.database.transaction(async (tx) => {
      const row = await this.owned(tx, caller, name);
      const changes: Partial<ModelRow> = { update_time: this.clock.now() };
      for (const p of paths) {
        if (p === "display_name") changes.display_name = f.displayName;
        if (p === "description") changes.description = f.description;
        if (p === "context_window") changes.context_window = f.contextWindow;
        // Usage records keep the price they were recorded at; a change applies from now on.
        if (p === "input_price_micros_per_million") changes.input_price = f.inputPrice;
        if (p === "output_price_micros_per_million") changes.output_price = f.outputPrice;
        if (p === "status") changes.status = f.status;
        if (p === "visibility") changes.visibility = f.visibility;
      }
      await tx.updateTable("model").set(changes).where("model_id", "=", row.model_id).execute();
      return (await tx.selectFrom("model").selectAll().where("model_id", "=", row.model_id).executeTakeFirst())!;
    });
  }

  async delete(caller: Caller, name: string): Promise<void> {
    await this.database.transaction(async (tx) => {
      const row = await this.owned(tx, caller, name);
      await tx.deleteFrom("model").where("model_id", "=", row.model_id).execute();
    });
  }

  /** For metering: the current price of a model the project may use now (not disabled). */
  async priceForUsage(db: Db, projectId: string, model: string) {
    const row = await db.selectFrom("model").selectAll().where("model_id", "=", idOf(model)).executeTakeFirst();
    if (!row || !this.visibleTo(row, projectId) || row.status === "disabled") return undefined;
    return { name: modelName(row.model_id), inputPriceMicrosPerMillion: Number(row.input_price), outputPriceMicrosPerMillion: Number(row.output_price) };
  }

  /** A model the caller may change: NOT_FOUND if invisible, PERMISSION_DENIED if visible but not its project's. */
  private async owned(tx: Db, caller: Caller, name: string): Promise<ModelRow> {
    const row = await tx.selectFrom("model").selectAll().where("model_id", "=", idOf(name)).executeTakeFirst();
    if (!row || !this.visibleTo(row, caller.projectId)) throw notFound(`model "${name}"`);
    const owner = row.owner_project ?? this.platformProject;
    if (owner !== caller.projectId) {
      throw permissionDenied(row.owner_project === null ? `${name} is a platform model: only the platform project may change it` : `${name} belongs to another project`);
    }
    if (caller.role < Role.DEVELOPER) throw permissionDenied("changing models needs role developer");
    return row;
  }
}
