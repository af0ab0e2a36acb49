/**
 * ModelService against a real server: CRUD with etags and request ids,
 * visibility across projects, platform-wide models, the price history,
 * filters, ordering and keyset pagination, and who may change what.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { ModelStatus, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { expectCode } from "../support/expect-error.js";
import { type CatalogClients, names, useCatalogServer } from "./catalog-support.js";

const T0 = Date.UTC(2026, 6, 1, 12);
const clock = new ManualClock(T0);
const env = useCatalogServer({}, { clock });

/** Every page of a listing with page_size 2: the names, and the number of models on each page. */
async function pageThrough(c: CatalogClients, req: { orderBy?: string; provider?: string; status?: ModelStatus }) {
  const seen: string[] = [];
  const sizes: number[] = [];
  let pageToken = "";
  do {
    const r = await c.models.listModels({ ...req, pageSize: 2, pageToken });
    seen.push(...r.models.map((m) => m.name));
    sizes.push(r.models.length);
    pageToken = r.nextPageToken;
  } while (pageToken);
  return { seen, sizes };
}

describe("CRUD", () => {
  it("creates with defaults, reads back the same, updates only the masked fields, deletes only the version read", async () => {
    const a = await env.project("crud");
    const { model } = await a.models.createModel({
      modelId: "crud/llm-1.5",
      model: { displayName: "LLM", description: "d", contextWindow: 128_000, inputPriceMicrosPerMillion: 2_500_000n, outputPriceMicrosPerMillion: 10_000_000n },
    });
    expect(model).toMatchObject({
      name: "models/crud/llm-1.5",
      displayName: "LLM",
      provider: "crud",
      description: "d",
      contextWindow: 128_000,
      inputPriceMicrosPerMillion: 2_500_000n,
      outputPriceMicrosPerMillion: 10_000_000n,
      status: ModelStatus.ACTIVE,
      visibility: ModelVisibility.PRIVATE,
      ownerProject: "crud",
      createTime: timestampFromMs(clock.now()),
      updateTime: timestampFromMs(clock.now()),
    });
    expect(model!.etag).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect((await a.models.getModel({ name: "models/crud/llm-1.5" })).model).toEqual(model);

    clock.advance(1_000);
    const { model: updated } = await a.models.updateModel({
      model: { name: "models/crud/llm-1.5", displayName: "LLM 2", description: "ignored: not in the mask", contextWindow: 200_000 },
      updateMask: { paths: ["display_name", "context_window"] },
    });
    expect(updated).toMatchObject({ displayName: "LLM 2", description: "d", contextWindow: 200_000, inputPriceMicrosPerMillion: 2_500_000n, updateTime: timestampFromMs(T0 + 1_000) });
    expect(updated!.createTime).toEqual(model!.createTime);
    expect(updated!.etag).not.toBe(model!.etag);

    const stale = await expectCode(a.models.deleteModel({ name: "models/crud/llm-1.5", etag: model!.etag }), Code.Aborted, /changed since it was read/);
    expect(stale.rawMessage).toBe("models/crud/llm-1.5 has changed since it was read (stale etag); read it again");
    expect((await a.models.getModel({ name: "models/crud/llm-1.5" })).model?.displayName).toBe("LLM 2");
    await a.models.deleteModel({ name: "models/crud/llm-1.5", etag: updated!.etag });
    await expectCode(a.models.getModel({ name: "models/crud/llm-1.5" }), Code.NotFound);
    await expectCode(a.models.deleteModel({ name: "models/crud/llm-1.5" }), Code.NotFound);
    // The name is free again, with a fresh price history.
    await a.models.createModel({ modelId: "crud/llm-1.5", model: { inputPriceMicrosPerMillion: 9n } });
    const history = await env.ts.app.database.db.selectFrom("model_price").select(["input_price"]).where("model_id", "=", "crud/llm-1.5").execute();
    expect(history).toEqual([{ input_price: 9 }]);
  });

  it("a retried create with the same request_id returns the model; otherwise the name is taken, and other projects cannot publish in the namespace", async () => {
    const a = await env.project("idem");
    const first = await a.models.createModel({ modelId: "idem/m", model: { displayName: "one" }, requestId: "r-1" });
    const retry = await a.models.createModel({ modelId: "idem/m", model: { displayName: "one" }, requestId: "r-1" });
    expect(retry.model).toEqual(first.model);
    await expectCode(a.models.createModel({ modelId: "idem/m", model: {}, requestId: "r-2" }), Code.AlreadyExists, /^model "models\/idem\/m" already exists$/);
    await expectCode(a.models.createModel({ modelId: "idem/m", model: {} }), Code.AlreadyExists);
    // The same request_id from another person of the project is not a retry.
    const admin = await env.clients("idem", "admin");
    await expectCode(admin.models.createModel({ modelId: "idem/m", model: {}, requestId: "r-1" }), Code.AlreadyExists);
    // Another project cannot publish under idem/ at all: refused from the name alone, so it learns nothing of the ids there.
    const b = await env.project("idem-b");
    await expectCode(b.models.createModel({ modelId: "idem/m", model: {}, requestId: "r-1" }), Code.PermissionDenied, /publishes under its own namespace, models\/idem-b\//);
    await expectCode(b.models.createModel({ modelId: "idem/free", model: {}, requestId: "r-1" }), Code.PermissionDenied, /publishes under its own namespace, models\/idem-b\//);
    expect(await env.ts.app.database.db.selectFrom("model").select("model_id").where("model_id", "=", "idem/m").execute()).toHaveLength(1);
  });
});

describe("visibility", () => {
  it("another project sees public models only; a private one is NOT_FOUND like an absent one, for every method", async () => {
    const a = await env.project("vis-a");
    const b = await env.project("vis-b");
    await a.models.createModel({ modelId: "vis-a/open", model: { visibility: ModelVisibility.PUBLIC, inputPriceMicrosPerMillion: 5n } });
    await a.models.createModel({ modelId: "vis-a/closed", model: { visibility: ModelVisibility.PRIVATE } });

    expect(names((await a.models.listModels({ provider: "vis-a" })).models)).toEqual(["models/vis-a/closed", "models/vis-a/open"]);
    expect(names((await b.models.listModels({ provider: "vis-a" })).models)).toEqual(["models/vis-a/open"]);
    expect((await b.models.getModel({ name: "models/vis-a/open" })).model).toMatchObject({ ownerProject: "vis-a", inputPriceMicrosPerMillion: 5n });

    const hidden = await expectCode(b.models.getModel({ name: "models/vis-a/closed" }), Code.NotFound);
    const absent = await expectCode(b.models.getModel({ name: "models/vis-a/nothing" }), Code.NotFound);
    expect([hidden.rawMessage, absent.rawMessage]).toEqual(['model "models/vis-a/closed" not found', 'model "models/vis-a/nothing" not found']);
    await expectCode(b.models.updateModel({ model: { name: "models/vis-a/closed", displayName: "x" }, updateMask: { paths: ["display_name"] } }), Code.NotFound);
    await expectCode(b.models.deleteModel({ name: "models/vis-a/closed" }), Code.NotFound);
    // Visible but not its own: PERMISSION_DENIED, and nothing changes.
    await expectCode(b.models.updateModel({ model: { name: "models/vis-a/open", inputPriceMicrosPerMillion: 0n }, updateMask: { paths: ["input_price_micros_per_million"] } }), Code.PermissionDenied, /belongs to another project/);
    await expectCode(b.models.deleteModel({ name: "models/vis-a/open" }), Code.PermissionDenied, /belongs to another project/);
    expect((await a.models.getModel({ name: "models/vis-a/open" })).model?.inputPriceMicrosPerMillion).toBe(5n);

    // Making it private hides it from B at once.
    await a.models.updateModel({ model: { name: "models/vis-a/open", visibility: ModelVisibility.PRIVATE }, updateMask: { paths: ["visibility"] } });
    await expectCode(b.models.getModel({ name: "models/vis-a/open" }), Code.NotFound);
    expect((await b.models.listModels({ provider: "vis-a" })).models).toEqual([]);
  });
});

describe("platform-wide models", () => {
  it("are published by the platform project's developers and admins, public, seen and used by every project, changed by no one else", async () => {
    const platform = await env.project("platform");
    const { model } = await platform.models.createModel({ modelId: "acme-ai/gpt-test", model: { inputPriceMicrosPerMillion: 7n } });
    expect(model).toMatchObject({ ownerProject: "", visibility: ModelVisibility.PUBLIC, provider: "acme-ai" });
    const admin = await env.clients("platform", "admin");
    await admin.models.updateModel({ model: { name: "models/acme-ai/gpt-test", inputPriceMicrosPerMillion: 8n }, updateMask: { paths: ["input_price_micros_per_million"] } });

    const user = await env.clients("platform", "user");
    await expectCode(user.models.createModel({ modelId: "acme-ai/other", model: {} }), Code.PermissionDenied, /needs role developer; the caller is user/);
    await expectCode(user.models.updateModel({ model: { name: "models/acme-ai/gpt-test", displayName: "x" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /needs role developer/);
    await expectCode(platform.models.createModel({ modelId: "acme-ai/hidden", model: { visibility: ModelVisibility.PRIVATE } }), Code.InvalidArgument, /^model\.visibility: platform-wide models are seen by every project/);
    await expectCode(platform.models.updateModel({ model: { name: "models/acme-ai/gpt-test", visibility: ModelVisibility.PRIVATE }, updateMask: { paths: ["visibility"] } }), Code.InvalidArgument, /model\.visibility/);

    const c = await env.project("plat-user");
    expect((await c.models.getModel({ name: "models/acme-ai/gpt-test" })).model?.inputPriceMicrosPerMillion).toBe(8n);
    expect(names((await c.models.listModels({ provider: "acme-ai" })).models)).toEqual(["models/acme-ai/gpt-test"]);
    expect(await env.ts.app.models.priceForUsage(env.ts.app.database.db, "plat-user", "acme-ai/gpt-test")).toEqual({ name: "models/acme-ai/gpt-test", inputPriceMicrosPerMillion: 8, outputPriceMicrosPerMillion: 0 });
    const cAdmin = await env.clients("plat-user", "admin");
    await expectCode(cAdmin.models.updateModel({ model: { name: "models/acme-ai/gpt-test", inputPriceMicrosPerMillion: 0n }, updateMask: { paths: ["input_price_micros_per_million"] } }), Code.PermissionDenied, /^models\/acme-ai\/gpt-test is a platform model: only the platform project may change it$/);
    await expectCode(cAdmin.models.deleteModel({ name: "models/acme-ai/gpt-test" }), Code.PermissionDenied, /platform model/);
    // Another project's model is its own, never platform-wide, and only in a namespace it owns.
    expect((await c.models.createModel({ modelId: "plat-user/mine", model: {} })).model).toMatchObject({ ownerProject: "plat-user", visibility: ModelVisibility.PRIVATE });
    await expectCode(c.models.createModel({ modelId: "acme-ai/mine", model: {} }), Code.PermissionDenied, /NAMESPACE|own namespace/);
  });
});

describe("FORMSTATE_PLATFORM_PROJECT names the platform project", () => {
  const ops = useCatalogServer({ FORMSTATE_PLATFORM_PROJECT: "ops" });
  it("its developers publish platform-wide models; the project called platform is then an ordinary project", async () => {
    expect((await (await ops.project("ops")).models.createModel({ modelId: "x/one", model: {} })).model?.ownerProject).toBe("");
    expect((await (await ops.project("platform")).models.createModel({ modelId: "platform/two", model: {} })).model?.ownerProject).toBe("platform");
  });
  it("defaults to platform and must be a project id", () => {
    expect(loadConfig({}).platformProject).toBe("platform");
    expect(() => loadConfig({ FORMSTATE_PLATFORM_PROJECT: "Ops Team" })).toThrow(ConfigError);
    expect(() => loadConfig({ FORMSTATE_PLATFORM_PROJECT: "Ops Team" })).toThrow(/FORMSTATE_PLATFORM_PROJECT must match/);
  });
});

describe("price history", () => {
  it("keeps every price from when it applied; a lookup before a change gets the old price", async () => {
    const p = await env.project("hist");
    const db = env.ts.app.database.db;
    const models = env.ts.app.models;
    const start = clock.now();
    await p.models.createModel({ modelId: "hist/m", model: { inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 2_000_000n, visibility: ModelVisibility.PUBLIC } });
    clock.advance(60_000);
    await p.models.updateModel({ model: { name: "models/hist/m", inputPriceMicrosPerMillion: 3_000_000n }, updateMask: { paths: ["input_price_micros_per_million"] } });
    clock.advance(60_000);
    await p.models.updateModel({ model: { name: "models/hist/m", outputPriceMicrosPerMillion: 4_000_000n, displayName: "M" }, updateMask: { paths: ["output_price_micros_per_million", "display_name"] } });
    clock.advance(60_000);
    // Neither a change without a price nor a "change" to the same price adds a row.
    await p.models.updateModel({ model: { name: "models/hist/m", displayName: "M2", inputPriceMicrosPerMillion: 3_000_000n }, updateMask: { paths: ["display_name", "input_price_micros_per_million"] } });

    const rows = await db.selectFrom("model_price").selectAll().where("model_id", "=", "hist/m").orderBy("effective_from").execute();
    expect(rows).toEqual([
      { model_id: "hist/m", effective_from: start, input_price: 1_000_000, output_price: 2_000_000 },
      { model_id: "hist/m", effective_from: start + 60_000, input_price: 3_000_000, output_price: 2_000_000 },
      { model_id: "hist/m", effective_from: start + 120_000, input_price: 3_000_000, output_price: 4_000_000 },
    ]);
    const at = async (t: number) => {
      const price = await models.priceForUsageAt(db, "hist", "models/hist/m", t);
      return price && [price.inputPriceMicrosPerMillion, price.outputPriceMicrosPerMillion];
    };
    expect(await at(start - 1)).toBeUndefined();
    expect(await at(start)).toEqual([1_000_000, 2_000_000]);
    expect(await at(start + 59_999)).toEqual([1_000_000, 2_000_000]);
    expect(await at(start + 60_000)).toEqual([3_000_000, 2_000_000]);
    expect(await at(start + 119_999)).toEqual([3_000_000, 2_000_000]);
    expect(await at(start + 500_000)).toEqual([3_000_000, 4_000_000]);
    // Another project that sees the model gets the same history; the name may omit "models/".
    expect(await models.priceForUsageAt(db, "crud", "hist/m", start + 1)).toEqual({ name: "models/hist/m", inputPriceMicrosPerMillion: 1_000_000, outputPriceMicrosPerMillion: 2_000_000 });
    expect(await models.priceForUsage(db, "hist", "hist/m")).toEqual({ name: "models/hist/m", inputPriceMicrosPerMillion: 3_000_000, outputPriceMicrosPerMillion: 4_000_000 });
  });

  it("prices deprecated models, not disabled ones, and nothing a project cannot see", async () => {
    const p = await env.project("stat");
    const db = env.ts.app.database.db;
    const models = env.ts.app.models;
    await p.models.createModel({ modelId: "stat/m", model: { inputPriceMicrosPerMillion: 11n, outputPriceMicrosPerMillion: 22n } });
    const price = { name: "models/stat/m", inputPriceMicrosPerMillion: 11, outputPriceMicrosPerMillion: 22 };
    expect(await models.priceForUsage(db, "stat", "models/stat/m")).toEqual(price);
    expect(await models.priceForUsage(db, "other", "models/stat/m")).toBeUndefined();
    expect(await models.priceForUsageAt(db, "other", "models/stat/m", clock.now())).toBeUndefined();
    expect(await models.priceForUsage(db, "stat", "models/stat/none")).toBeUndefined();
    await p.models.updateModel({ model: { name: "models/stat/m", status: ModelStatus.DEPRECATED }, updateMask: { paths: ["status"] } });
    expect(await models.priceForUsage(db, "stat", "stat/m")).toEqual(price);
    await p.models.updateModel({ model: { name: "models/stat/m", status: ModelStatus.DISABLED }, updateMask: { paths: ["status"] } });
    expect(await models.priceForUsage(db, "stat", "stat/m")).toBeUndefined();
    expect(await models.priceForUsageAt(db, "stat", "stat/m", clock.now())).toBeUndefined();
  });
});

describe("listing", () => {
  it("orders by name, input price and newest first, two per page, with filters", async () => {
    const a = await env.project("ord");
    const prices = [5n, 1n, 4n, 2n, 3n];
    for (let i = 0; i < 5; i++) {
      clock.advance(1_000);
      await a.models.createModel({ modelId: `ord/m${i}`, model: { inputPriceMicrosPerMillion: prices[i], visibility: i % 2 ? ModelVisibility.PUBLIC : ModelVisibility.PRIVATE } });
    }
    // Equal prices are ordered by name.
    await a.models.createModel({ modelId: "ord/m5", model: { inputPriceMicrosPerMillion: 2n, status: ModelStatus.DEPRECATED } });
    await a.models.createModel({ modelId: "ord/off", model: { inputPriceMicrosPerMillion: 0n, status: ModelStatus.DISABLED } });
    const m = (...ids: string[]) => ids.map((i) => `models/ord/${i}`);

    expect(await pageThrough(a, { provider: "ord" })).toEqual({ seen: m("m0", "m1", "m2", "m3", "m4", "m5"), sizes: [2, 2, 2] });
    expect(await pageThrough(a, { provider: "ord", orderBy: "name" })).toEqual({ seen: m("m0", "m1", "m2", "m3", "m4", "m5"), sizes: [2, 2, 2] });
    expect(await pageThrough(a, { provider: "ord", orderBy: "input_price" })).toEqual({ seen: m("m1", "m3", "m5", "m4", "m2", "m0"), sizes: [2, 2, 2] });
    // m5 was created in the same millisecond as m4: ties go by name, descending.
    expect(await pageThrough(a, { provider: "ord", orderBy: "create_time desc" })).toEqual({ seen: m("m5", "m4", "m3", "m2", "m1", "m0"), sizes: [2, 2, 2] });
    // Disabled models only when asked for.
    expect(await pageThrough(a, { provider: "ord", status: ModelStatus.DISABLED })).toEqual({ seen: m("off"), sizes: [1] });
    expect(names((await a.models.listModels({ provider: "ord", status: ModelStatus.DEPRECATED })).models)).toEqual(m("m5"));
    expect(names((await a.models.listModels({ provider: "ord", visibility: ModelVisibility.PUBLIC })).models)).toEqual(m("m1", "m3"));
    expect(names((await a.models.listModels({ provider: "ord", visibility: ModelVisibility.PRIVATE, orderBy: "input_price" })).models)).toEqual(m("m0", "m2", "m4", "m5"));
    const b = await env.project("ord-b");
    expect(await pageThrough(b, { provider: "ord", orderBy: "input_price" })).toEqual({ seen: m("m1", "m3"), sizes: [2] });
    expect((await a.models.listModels({ provider: "no-such-provider" })).models).toEqual([]);
  });

  it("page tokens are opaque and belong to their order", async () => {
    const a = await env.project("tok");
    for (const id of ["a", "b", "c"]) await a.models.createModel({ modelId: `tok/${id}`, model: {} });
    const first = await a.models.listModels({ provider: "tok", pageSize: 1 });
    expect(first.nextPageToken).not.toContain("tok/a");
    await expectCode(a.models.listModels({ provider: "tok", pageSize: 1, pageToken: first.nextPageToken, orderBy: "input_price" }), Code.InvalidArgument, /^page_token: /);
    await expectCode(a.models.listModels({ pageToken: "not-a-token" }), Code.InvalidArgument, /^page_token: is not a token from a previous page/);
  });
});

describe("who may change models", () => {
  it("users and read keys may read only; write keys and developers change their project's models", async () => {
    const a = await env.project("who");
    await a.models.createModel({ modelId: "who/m", model: { visibility: ModelVisibility.PUBLIC } });
    const user = await env.clients("who", "user");
    expect((await user.models.getModel({ name: "models/who/m" })).model?.name).toBe("models/who/m");
    await expectCode(user.models.createModel({ modelId: "who/u", model: {} }), Code.PermissionDenied, /CreateModel needs role developer; the caller is user/);
    await expectCode(user.models.updateModel({ model: { name: "models/who/m", displayName: "u" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /needs role developer/);
    await expectCode(user.models.deleteModel({ name: "models/who/m" }), Code.PermissionDenied, /needs role developer/);

    const reader = await env.withKey("who", [Scope.READ]);
    expect(names((await reader.models.listModels({ provider: "who" })).models)).toEqual(["models/who/m"]);
    await expectCode(reader.models.createModel({ modelId: "who/k", model: {} }), Code.PermissionDenied, /needs an API key with scope write; this key has read/);
    const writer = await env.withKey("who", [Scope.READ, Scope.WRITE]);
    expect((await writer.models.createModel({ modelId: "who/k", model: {} })).model?.ownerProject).toBe("who");
    await writer.models.deleteModel({ name: "models/who/k" });
    expect((await a.models.getModel({ name: "models/who/m" })).model?.displayName).toBe("");
  });
});
