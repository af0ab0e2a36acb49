/**
 * Provider namespaces: a project publishes models only under its own id or a
 * namespace the platform assigned it; well-known providers belong to the
 * platform; refusing says nothing about which ids exist; and the platform
 * takes a namespace back by reassigning it (the old owner then changes
 * nothing in it, the platform everything).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { CatalogNamespaces, parseCatalogNamespaces } from "../../src/catalog/namespaces.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

describe("the namespace rule", () => {
  it("parses assignments and names bad entries", () => {
    const ok = parseCatalogNamespaces(" openai = oai-inc ,acme-ai=acme");
    expect([...ok.assigned]).toEqual([["openai", "oai-inc"], ["acme-ai", "acme"]]);
    expect(ok.problems).toEqual([]);
    expect(parseCatalogNamespaces("openai").problems).toHaveLength(1);
    expect(parseCatalogNamespaces("Open=x").problems).toHaveLength(1);
    expect(parseCatalogNamespaces("a=b=c").problems).toHaveLength(1);
    expect(parseCatalogNamespaces("a=p,a=q").problems).toEqual(["FORMSTATE_CATALOG_NAMESPACES assigns a twice"]);
  });

  it("gives each namespace to one owner and the platform", () => {
    const ns = new CatalogNamespaces("platform", new Map([["acme-ai", "acme"]]));
    expect(ns.owns("acme", "acme-ai")).toBe(true);
    expect(ns.owns("mallory", "acme-ai")).toBe(false);
    expect(ns.owns("platform", "acme-ai")).toBe(true);
    // Well-known providers are the platform's unless assigned.
    expect(ns.owns("mallory", "openai")).toBe(false);
    expect(ns.owns("platform", "openai")).toBe(true);
    // An unreserved namespace is the project's of that id.
    expect(ns.owns("mallory", "mallory")).toBe(true);
    expect(ns.owns("mallory", "bob")).toBe(false);
  });
});

describe("publishing over the wire", () => {
  const dir = mkdtempSync(join(tmpdir(), "formstate-ns-"));
  // Both servers share one SQLite file: the second one is the first restarted with new assignments.
  const database = join(dir, "catalog.db");
  let ts: TestServer | undefined;
  afterAll(async () => {
    await ts?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(assignments: string) {
    await ts?.close();
    ts = await startTestServer({ DATABASE_URL: database, FORMSTATE_CATALOG_NAMESPACES: assignments });
    return ts;
  }
  async function models(projectId: string, role: "admin" | "developer" = "developer") {
    const token = await ts!.token({ projectId, role, subject: `${projectId}-${role}` });
    return createClient(ModelService, ts!.grpc(token));
  }
  async function account(projectId: string) {
    const token = await ts!.token({ projectId, role: "admin", subject: `${projectId}-admin` });
    await createClient(AccountService, ts!.grpc(token)).createAccount({ account: {} });
  }
  async function answer(call: Promise<unknown>, name: string): Promise<string> {
    try {
      await call;
      return "OK";
    } catch (err) {
      const ce = ConnectError.from(err);
      return `${Code[ce.code]} ${ce.rawMessage.split(name).join("<name>")}`;
    }
  }

  it("refuses others' namespaces whatever exists in them, and lets owners publish", async () => {
    await start("openai=oai-inc,acme-ai=acme");
    for (const p of ["platform", "oai-inc", "acme", "mallory"]) await account(p);
    const mallory = await models("mallory");

    await expectCode(mallory.createModel({ modelId: "openai/gpt-x", model: {} }), Code.PermissionDenied, /namespace "openai" is reserved/);
    await expectCode(mallory.createModel({ modelId: "anthropic/claude-x", model: {} }), Code.PermissionDenied, /namespace "anthropic" is reserved/);
    await expectCode(mallory.createModel({ modelId: "oai-inc/m", model: {} }), Code.PermissionDenied, /publishes under its own namespace/);
    expect((await mallory.createModel({ modelId: "mallory/m", model: {} })).model?.name).toBe("models/mallory/m");

    const oai = await models("oai-inc");
    expect((await oai.createModel({ modelId: "openai/gpt-x", model: { visibility: ModelVisibility.PUBLIC } })).model?.ownerProject).toBe("oai-inc");
    expect((await (await models("platform")).createModel({ modelId: "anthropic/claude-x", model: {} })).model?.name).toBe("models/anthropic/claude-x");

    // No oracle: another project's private id answers as a free id does, in a reserved and an own namespace.
    await (await models("acme")).createModel({ modelId: "acme-ai/secret", model: { visibility: ModelVisibility.PRIVATE } });
    await oai.createModel({ modelId: "oai-inc/secret", model: { visibility: ModelVisibility.PRIVATE } });
    for (const [taken, free] of [
      ["acme-ai/secret", "acme-ai/free"],
      ["oai-inc/secret", "oai-inc/free"],
    ]) {
      const a = await answer(mallory.createModel({ modelId: taken, model: {} }), `models/${taken}`);
      const b = await answer(mallory.createModel({ modelId: free, model: {} }), `models/${free}`);
      expect(a).toMatch(/^PermissionDenied/);
      expect(a).toBe(b);
    }
  });

  it("takes a namespace back: after reassignment the old owner changes nothing, the platform everything", async () => {
    // Restarted without the openai assignment: openai is the platform's again.
    await start("acme-ai=acme");
    const oai = await models("oai-inc");
    await expectCode(
      oai.updateModel({ model: { name: "models/openai/gpt-x", displayName: "mine" }, updateMask: { paths: ["display_name"] } }),
      Code.PermissionDenied,
      /namespace "openai" is reserved for another owner/,
    );
    await expectCode(oai.createModel({ modelId: "openai/gpt-y", model: {} }), Code.PermissionDenied, /namespace "openai" is reserved/);
    await expectCode(oai.deleteModel({ name: "models/openai/gpt-x" }), Code.PermissionDenied, /reserved for another owner/);

    const platform = await models("platform");
    const renamed = await platform.updateModel({ model: { name: "models/openai/gpt-x", displayName: "OpenAI GPT-X" }, updateMask: { paths: ["display_name"] } });
    expect(renamed.model?.displayName).toBe("OpenAI GPT-X");
    await platform.deleteModel({ name: "models/openai/gpt-x" });
    await expectCode(platform.getModel({ name: "models/openai/gpt-x" }), Code.NotFound);

    // The old owner's own namespace is untouched.
    const own = await oai.getModel({ name: "models/oai-inc/secret" });
    expect(own.model?.ownerProject).toBe("oai-inc");
  });
});
