/** ModelService over the wire. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { type Model, ModelSchema, type ModelService, ModelStatus, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { callerOf } from "../auth/principal.js";
import { fieldMaskPaths } from "../wire/field-mask.js";
import { etagOf } from "./etag.js";
import { type ModelFields, type ModelOrder, type ModelRow, type Models, modelName } from "./models.js";
import { wireEnum } from "./wire-enum.js";

const status = wireEnum<ModelStatus>({ active: ModelStatus.ACTIVE, deprecated: ModelStatus.DEPRECATED, disabled: ModelStatus.DISABLED });
const visibility = wireEnum<ModelVisibility>({ public: ModelVisibility.PUBLIC, private: ModelVisibility.PRIVATE });

export function toModel(r: ModelRow): Model {
  return create(ModelSchema, {
    name: modelName(r.model_id),
    displayName: r.display_name,
    provider: r.provider,
    description: r.description,
    contextWindow: r.context_window,
    inputPriceMicrosPerMillion: BigInt(r.input_price),
    outputPriceMicrosPerMillion: BigInt(r.output_price),
    status: status.wire(r.status),
    visibility: visibility.wire(r.visibility),
    ownerProject: r.owner_project ?? "",
    publisherShareBps: r.owner_project === null ? 0 : (r.publisher_share_bps ?? undefined),
    createTime: timestampFromMs(r.create_time),
    updateTime: timestampFromMs(r.update_time),
    etag: etagOf(r),
  });
}

function fieldsOf(m: Model): ModelFields {
  return {
    displayName: m.displayName,
    description: m.description,
    contextWindow: m.contextWindow,
    inputPrice: Number(m.inputPriceMicrosPerMillion),
    outputPrice: Number(m.outputPriceMicrosPerMillion),
    status: status.name(m.status),
    visibility: visibility.name(m.visibility),
    publisherShareBps: m.publisherShareBps,
  };
}

const updatable = ["display_name", "description", "context_window", "input_price_micros_per_million", "output_price_micros_per_million", "status", "visibility", "publisher_share_bps"] as const;

export function modelService(models: Models): ServiceImpl<typeof ModelService> {
  return {
    async createModel(req, ctx) {
      return { model: toModel(await models.create(callerOf(ctx), req.modelId, fieldsOf(req.model!), req.requestId)) };
    },
    async getModel(req, ctx) {
      return { model: toModel(await models.get(callerOf(ctx), req.name)) };
    },
    async listModels(req, ctx) {
      const filter = { provider: req.provider || undefined, status: status.name(req.status) || undefined, visibility: visibility.name(req.visibility) || undefined };
      const page = await models.list(callerOf(ctx), filter, (req.orderBy || "name") as ModelOrder, req.pageSize, req.pageToken);
      return { models: page.items.map(toModel), nextPageToken: page.nextPageToken };
    },
    async updateModel(req, ctx) {
      const paths = fieldMaskPaths(req.updateMask, updatable);
      return { model: toModel(await models.update(callerOf(ctx), req.model!.name, paths, fieldsOf(req.model!))) };
    },
    async deleteModel(req, ctx) {
      await models.delete(callerOf(ctx), req.name, req.etag);
      return {};
    },
  };
}
