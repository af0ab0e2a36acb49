/**
 * Publisher shares on the catalog (issue 18, item 1): a priced model or
 * agent carries publisher_share_bps, the platform default when unset, never
 * above FORMSTATE_PUBLISHER_SHARE_MAX_BPS (INVALID_ARGUMENT naming the
 * field); platform-wide models have no publisher and share nothing.
 */
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { clawbackSplit, split } from "../../src/marketplace/split.js";
import { expectCode } from "../support/expect-error.js";
import { useCatalogServer } from "../catalog/catalog-support.js";

const env = useCatalogServer({ FORMSTATE_PUBLISHER_SHARE_MAX_BPS: "7500", FORMSTATE_PUBLISHER_SHARE_DEFAULT_BPS: "6000" });

describe("publisher_share_bps on agents and models", () => {
  it("defaults, accepts up to the bound, refuses beyond it on create and update", async () => {
    const pub = await env.project("ps-pub");
    const { agent: dflt } = await pub.agents.createAgent({ agentId: "ps-default", agent: { pricePerInvocationMicros: 100n, visibility: AgentVisibility.PUBLIC } });
    expect(dflt?.publisherShareBps).toBe(6000);
    const { agent: max } = await pub.agents.createAgent({ agentId: "ps-max", agent: { pricePerInvocationMicros: 100n, publisherShareBps: 7500 } });
    expect(max?.publisherShareBps).toBe(7500);
    const { agent: zero } = await pub.agents.createAgent({ agentId: "ps-zero", agent: { pricePerInvocationMicros: 100n, publisherShareBps: 0 } });
    expect(zero?.publisherShareBps).toBe(0);
    await expectCode(pub.agents.createAgent({ agentId: "ps-over", agent: { pricePerInvocationMicros: 100n, publisherShareBps: 7501 } }), Code.InvalidArgument, /^agent\.publisher_share_bps: must be at most 7500 basis points/);
    await expectCode(pub.agents.getAgent({ name: "agents/ps-over" }), Code.NotFound);
    // The wire bound (0..10000) is protovalidate's: still INVALID_ARGUMENT.
    await expectCode(pub.agents.createAgent({ agentId: "ps-wire", agent: { publisherShareBps: 10_001 } }), Code.InvalidArgument);

    const { agent: lowered } = await pub.agents.updateAgent({ agent: { name: "agents/ps-default", publisherShareBps: 2500 }, updateMask: { paths: ["publisher_share_bps"] } });
    expect(lowered?.publisherShareBps).toBe(2500);
    await expectCode(pub.agents.updateAgent({ agent: { name: "agents/ps-default", publisherShareBps: 9000 }, updateMask: { paths: ["publisher_share_bps"] } }), Code.InvalidArgument, /publisher_share_bps/);
    expect((await pub.agents.getAgent({ name: "agents/ps-default" })).agent?.publisherShareBps).toBe(2500);

    const { model } = await pub.models.createModel({ modelId: "ps-pub/m1", model: { inputPriceMicrosPerMillion: 1_000_000n, visibility: ModelVisibility.PUBLIC } });
    expect(model?.publisherShareBps).toBe(6000);
    await expectCode(pub.models.createModel({ modelId: "ps-pub/m2", model: { publisherShareBps: 8000 } }), Code.InvalidArgument, /^model\.publisher_share_bps: must be at most 7500/);
    const { model: updated } = await pub.models.updateModel({ model: { name: "models/ps-pub/m1", publisherShareBps: 7000 }, updateMask: { paths: ["publisher_share_bps"] } });
    expect(updated?.publisherShareBps).toBe(7000);
  });

  it("gives platform-wide models no publisher share", async () => {
    await env.project("platform");
    const platform = await env.clients("platform", "admin");
    const { model } = await platform.models.createModel({ modelId: "ps-platform/base", model: { inputPriceMicrosPerMillion: 1n } });
    expect(model).toMatchObject({ ownerProject: "", publisherShareBps: 0 });
  });
});

describe("the split rule", () => {
  it("rounds the publisher down and gives the platform the remainder, summing exactly", () => {
    expect(split(1_000_001, 7000)).toEqual({ gross: 1_000_001, publisher: 700_000, platform: 300_001 });
    expect(split(3, 3333)).toEqual({ gross: 3, publisher: 0, platform: 3 });
    expect(split(Number.MAX_SAFE_INTEGER, 9999).publisher + split(Number.MAX_SAFE_INTEGER, 9999).platform).toBe(Number.MAX_SAFE_INTEGER);
    // Taking a charge back in pieces takes back exactly its split.
    const earning = { gross: 1001, publisher: split(1001, 7000).publisher };
    const parts = [clawbackSplit(earning, 0, 333), clawbackSplit(earning, 333, 333), clawbackSplit(earning, 666, 335)];
    expect(parts.reduce((s, p) => s + p.publisher, 0)).toBe(earning.publisher);
    expect(parts.reduce((s, p) => s + p.gross, 0)).toBe(1001);
  });

  it("refuses a default above the bound at start-up", () => {
    expect(() => loadConfig({ FORMSTATE_PUBLISHER_SHARE_MAX_BPS: "5000", FORMSTATE_PUBLISHER_SHARE_DEFAULT_BPS: "6000" })).toThrow(ConfigError);
    expect(loadConfig({ FORMSTATE_PUBLISHER_SHARE_MAX_BPS: "5000" }).marketplace).toMatchObject({ shareMaxBps: 5000, shareDefaultBps: 5000 });
  });
});
