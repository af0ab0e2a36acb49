/**
 * The model catalog. Platform-wide models (no owner, public) are managed by
 * the developers and admins of the platform project (FORMSTATE_PLATFORM_PROJECT);
 * a project's own models by its developers and admins. Callers see
 * platform-wide models, public models, and their own; anything else is
 * NOT_FOUND. Every price a model has had is kept with the time it took
 * effect, so usage can be priced at a point in time.
 */
import { actsForPlatform } from "../auth/principal.js";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import type { Caller } from "../accounts/accounts.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { alreadyExists, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { modelIdOf, modelName } from "../names/names.js";
import { checkEtag } from "./etag.js";
import { catalogOrders, listedStatuses } from "./keyset.js";
import * as repo from "./model-repository.js";
import type { ModelRow } from "./model-repository.js";
import { DEFAULT_SHARE_BOUNDS, type ShareBounds, resolveShare } from "../marketplace/split.js";

export type { ModelRow };

export interface ModelFields {
  displayName: string;
  description: string;
  contextWindow: number;
  inputPrice: number;
  outputPrice: number;
  /** active, deprecated, disabled; "" = unspecified. */
  status: string;
  /** public, private; "" = unspecified. */
  visibility: string;
  /** Basis points; undefined = unset (the platform default on create). */
  publisherShareBps?: number;
}

/** A model's price for metering: micro-USD per million tokens. */
export interface ModelPrice {
  name: string;
  inputPriceMicrosPerMillion: number;
  outputPriceMicrosPerMillion: number;
}

export { modelName };
const idOf = modelIdOf;

const orders = catalogOrders("input_price");
export type ModelOrder = keyof typeof orders;

export class Models {
  constructor(
    private readonly database: Database,
    private readonly clock: Clock,
    private readonly platformProject: string,
    private readonly shares: ShareBounds = DEFAULT_SHARE_BOUNDS,
  ) {}

  async create(caller: Caller, id: string, f: ModelFields, requestId: string): Promise<ModelRow> {
    const now = this.clock.now();
    if (caller.projectId === this.platformProject && !actsForPlatform(caller, this.platformProject)) throw this.walletNotGlobal();
    const owner = caller.projectId === this.platformProject ? null : caller.projectId;
    if (owner === null && f.visibility === "private") throw this.platformIsPublic();
    const row: ModelRow = {
      model_id: id,
      owner_project: owner,
      provider: id.split("/")[0],
      display_name: f.displayName,
      description: f.description,
      context_window: f.contextWindow,
      input_price: f.inputPrice,
      output_price: f.outputPrice,
      status: f.status || "active",
      visibility: owner === null ? "public" : f.visibility || "private",
      // Platform-wide models have no publisher: nothing to share.
      publisher_share_bps: owner === null ? 0 : resolveShare("model.publisher_share_bps", f.publisherShareBps, this.shares),
      created_by: caller.subject,
      create_request_id: requestId || null,
      create_time: now,
      update_time: now,
    };
    return this.database.transaction(async (tx) => {
      const existing = await repo.findModel(tx, id);
      if (existing) {
        const retry = requestId !== "" && existing.create_request_id === requestId && existing.created_by === caller.subject && existing.owner_project === owner;
        if (retry) return existing;
        throw alreadyExists(`model "${modelName(id)}"`);
      }
      await repo.insertModel(tx, row);
      await repo.insertPrice(tx, id, now, row.input_price, row.output_price);
      return row;
    });
  }

  async get(caller: Caller, name: string): Promise<ModelRow> {
    const row = await this.visible(this.database.db, caller.projectId, name);
    if (!row) throw notFound(`model "${name}"`);
    return row;
  }

  list(caller: Caller, filter: { provider?: string; status?: string; visibility?: string }, order: ModelOrder, size: number, token: string) {
    return repo.listModels(this.database.db, caller.projectId, { provider: filter.provider, visibility: filter.visibility, statuses: listedStatuses(filter.status) }, orders[order], size, token);
  }

  async update(caller: Caller, name: string, paths: string[], f: ModelFields): Promise<ModelRow> {
    return this.database.transaction(async (tx) => {
      const row = await this.owned(tx, caller, name);
      const now = this.clock.now();
      const changes: Partial<ModelRow> = { update_time: now };
      for (const p of paths) {
        if (p === "display_name") changes.display_name = f.displayName;
        if (p === "description") changes.description = f.description;
        if (p === "context_window") changes.context_window = f.contextWindow;
        if (p === "input_price_micros_per_million") changes.input_price = f.inputPrice;
        if (p === "output_price_micros_per_million") changes.output_price = f.outputPrice;
        if (p === "status") changes.status = f.status;
        if (p === "visibility") changes.visibility = f.visibility;
        if (p === "publisher_share_bps" && row.owner_project !== null) changes.publisher_share_bps = resolveShare("model.publisher_share_bps", f.publisherShareBps ?? 0, this.shares);
      }
      if (row.owner_project === null && changes.visibility === "private") throw this.platformIsPublic();
      await repo.updateModel(tx, row.model_id, changes);
      const input = changes.input_price ?? row.input_price;
      const output = changes.output_price ?? row.output_price;
      // A new price applies from now on; usage already recorded keeps the price it was charged.
      if (input !== row.input_price || output !== row.output_price) await repo.insertPrice(tx, row.model_id, now, input, output);
      return (await repo.findModel(tx, row.model_id))!;
    });
  }

  async delete(caller: Caller, name: string, etag: string): Promise<void> {
    await this.database.transaction(async (tx) => {
      const row = await this.owned(tx, caller, name);
      checkEtag(name, row, etag);
      await repo.deleteModel(tx, row.model_id);
    });
  }

  /**
   * For metering: the current price of a model the project can see and that
   * is not disabled (deprecated models still price); undefined otherwise.
   * `modelId` is `provider/model` or `models/provider/model`.
   */
  async priceForUsage(db: Db, projectId: string, modelId: string): Promise<ModelPrice | undefined> {
    const row = await this.visible(db, projectId, modelId);
    if (!row || row.status === "disabled") return undefined;
    return { name: modelName(row.model_id), inputPriceMicrosPerMillion: Number(row.input_price), outputPriceMicrosPerMillion: Number(row.output_price) };
  }

  /**
   * The price that applied at `at` (epoch ms) to a model the project can see
   * and that is not disabled now; undefined otherwise, and for a time before
   * the model existed. For pricing usage that happened in the past.
   */
  async priceForUsageAt(db: Db, projectId: string, modelId: string, at: number): Promise<ModelPrice | undefined> {
    const row = await this.visible(db, projectId, modelId);
    if (!row || row.status === "disabled") return undefined;
    const price = await repo.priceAt(db, row.model_id, at);
    if (!price) return undefined;
    return { name: modelName(row.model_id), inputPriceMicrosPerMillion: Number(price.input_price), outputPriceMicrosPerMillion: Number(price.output_price) };
  }

  /** For revenue share: the project that publishes a model (none for platform-wide ones) and its share. */
  async publisherOf(db: Db, nameOrId: string): Promise<{ ownerProject: string | null; shareBps: number } | undefined> {
    const row = await repo.findModel(db, idOf(nameOrId));
    if (!row) return undefined;
    return { ownerProject: row.owner_project, shareBps: row.owner_project === null ? 0 : (row.publisher_share_bps ?? this.shares.defaultBps) };
  }

  /** A model the project can see, in any status; undefined otherwise. */
  async visible(db: Db, projectId: string, nameOrId: string): Promise<ModelRow | undefined> {
    const row = await repo.findModel(db, idOf(nameOrId));
    return row && (row.owner_project === null || row.visibility === "public" || row.owner_project === projectId) ? row : undefined;
  }

  /** A model the caller may change: NOT_FOUND if invisible, PERMISSION_DENIED if visible but not its project's. */
  private async owned(tx: Db, caller: Caller, name: string): Promise<ModelRow> {
    const row = await this.visible(tx, caller.projectId, name);
    if (!row) throw notFound(`model "${name}"`);
    if (row.owner_project === null && caller.projectId === this.platformProject && !actsForPlatform(caller, this.platformProject)) throw this.walletNotGlobal();
    if ((row.owner_project ?? this.platformProject) !== caller.projectId) {
      throw permissionDenied(row.owner_project === null ? `${name} is a platform model: only the platform project may change it` : `${name} belongs to another project`);
    }
    if (caller.role < Role.DEVELOPER) throw permissionDenied("changing models needs role developer");
    return row;
  }

  private walletNotGlobal() {
    return permissionDenied("wallet tokens never act platform-wide: publish or change platform models signed in as a person or with an API key", "WALLET_NOT_GLOBAL");
  }

  private platformIsPublic() {
    return invalidArgument("model.visibility", "platform-wide models are seen by every project: leave it unspecified or PUBLIC");
  }
}
