/**
 * AgentService (without InvokeAgent, which catalog.test.ts drives) against a
 * real server: publishing and sharing, hire -> release -> hire again, status
 * rules for hires, idempotency, etags, listing, and the functions metering
 * calls.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AgentStatus, AgentVisibility, HireState } from "../../gen/formstate/v1/agent_service_pb.js";
import { ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import { expectCode } from "../support/expect-error.js";
import { type CatalogClients, names, useCatalogServer } from "./catalog-support.js";

const clock = new ManualClock(Date.UTC(2026, 6, 1, 12));
const env = useCatalogServer({}, { clock });

const slotsOf = async (c: CatalogClients, projectId: string) => (await c.accounts.getAccount({ name: `accounts/${projectId}` })).account?.agentSlots;

describe("publish, share, hire, release, hire again", () => {
  it("shows each project what it may see, and the share list only to the owner", async () => {
    const owner = await env.project("sh-own");
    const buyer = await env.project("sh-buy");
    const third = await env.project("sh-third");
    const other = await env.project("sh-other");
    await owner.agents.createAgent({ agentId: "sh-public", agent: { displayName: "Public", pricePerInvocationMicros: 10n, visibility: AgentVisibility.PUBLIC } });
    await owner.agents.createAgent({ agentId: "sh-private", agent: { displayName: "Private" } });
    const { agent: shared } = await owner.agents.createAgent({
      agentId: "sh-shared",
      agent: { displayName: "Shared", visibility: AgentVisibility.SHARED, sharedWithProjects: ["sh-buy", "sh-third"] },
    });
    expect(shared).toMatchObject({ name: "agents/sh-shared", ownerProject: "sh-own", status: AgentStatus.ACTIVE, visibility: AgentVisibility.SHARED, sharedWithProjects: ["sh-buy", "sh-third"] });

    const listed = async (c: CatalogClients) => names((await c.agents.listAgents({ ownerProject: "sh-own" })).agents);
    expect(await listed(owner)).toEqual(["agents/sh-private", "agents/sh-public", "agents/sh-shared"]);
    expect(await listed(buyer)).toEqual(["agents/sh-public", "agents/sh-shared"]);
    expect(await listed(third)).toEqual(["agents/sh-public", "agents/sh-shared"]);
    expect(await listed(other)).toEqual(["agents/sh-public"]);
    expect((await buyer.agents.getAgent({ name: "agents/sh-shared" })).agent).toMatchObject({ displayName: "Shared", sharedWithProjects: [] });
    const hidden = await expectCode(other.agents.getAgent({ name: "agents/sh-private" }), Code.NotFound);
    const absent = await expectCode(other.agents.getAgent({ name: "agents/sh-nothing" }), Code.NotFound);
    expect([hidden.rawMessage, absent.rawMessage]).toEqual(['agent "agents/sh-private" not found', 'agent "agents/sh-nothing" not found']);
    await expectCode(other.agents.hireAgent({ parent: "accounts/sh-other", agent: "agents/sh-shared" }), Code.NotFound, /^agent "agents\/sh-shared" not found$/);

    // The owner takes the buyer off the share list: hidden from it again, still shared with the third.
    const { agent: unshared } = await owner.agents.updateAgent({ agent: { name: "agents/sh-shared", sharedWithProjects: ["sh-third"] }, updateMask: { paths: ["shared_with_projects"] } });
    expect(unshared?.sharedWithProjects).toEqual(["sh-third"]);
    expect(await listed(buyer)).toEqual(["agents/sh-public"]);
    await expectCode(buyer.agents.getAgent({ name: "agents/sh-shared" }), Code.NotFound);
    expect(await listed(third)).toEqual(["agents/sh-public", "agents/sh-shared"]);

    // Going public empties the share list; SHARED again starts from no one.
    await owner.agents.updateAgent({ agent: { name: "agents/sh-shared", visibility: AgentVisibility.PUBLIC }, updateMask: { paths: ["visibility"] } });
    expect(await listed(other)).toEqual(["agents/sh-public", "agents/sh-shared"]);
    const { agent: reshared } = await owner.agents.updateAgent({ agent: { name: "agents/sh-shared", visibility: AgentVisibility.SHARED }, updateMask: { paths: ["visibility"] } });
    expect(reshared?.sharedWithProjects).toEqual([]);
    expect(await listed(third)).toEqual(["agents/sh-public"]);
    await expectCode(
      owner.agents.updateAgent({ agent: { name: "agents/sh-public", sharedWithProjects: ["sh-buy"] }, updateMask: { paths: ["shared_with_projects"] } }),
      Code.InvalidArgument,
      /^agent\.shared_with_projects: is only for SHARED agents$/,
    );
  });

  it("hires into a slot, releases it, and hires again", async () => {
    const owner = await env.project("hr-own");
    const buyer = await env.project("hr-buy");
    await owner.agents.createAgent({ agentId: "hr-a", agent: { pricePerInvocationMicros: 10n, visibility: AgentVisibility.SHARED, sharedWithProjects: ["hr-buy"] } });

    const first = await buyer.agents.hireAgent({ parent: "accounts/hr-buy", agent: "agents/hr-a" });
    expect(first.hire).toMatchObject({ agent: "agents/hr-a", state: HireState.ACTIVE, hiredBy: { kind: { case: "userId", value: "hr-buy-developer" } }, createTime: timestampFromMs(clock.now()) });
    expect(first.hire?.name).toMatch(/^accounts\/hr-buy\/hires\/[a-z0-9]{16}$/);
    expect(first.hire?.releaseTime).toBeUndefined();
    expect(first.agentSlots).toMatchObject({ used: 1n, limit: 1n, unlimited: false });
    expect(await slotsOf(buyer, "hr-buy")).toMatchObject({ used: 1n, limit: 1n });
    expect((await buyer.agents.listHires({ parent: "accounts/hr-buy" })).hires.map((h) => h.name)).toEqual([first.hire!.name]);
    expect(names((await buyer.agents.listAgents({ hiredOnly: true })).agents)).toEqual(["agents/hr-a"]);

    clock.advance(1_000);
    const released = await buyer.agents.releaseAgent({ name: first.hire!.name });
    expect(released.hire).toMatchObject({ name: first.hire!.name, state: HireState.RELEASED, releaseTime: timestampFromMs(clock.now()) });
    expect(released.agentSlots).toMatchObject({ used: 0n, limit: 1n });
    clock.advance(1_000);
    // Releasing again returns it unchanged.
    expect((await buyer.agents.releaseAgent({ name: first.hire!.name })).hire).toEqual(released.hire);
    expect((await buyer.agents.listHires({ parent: "accounts/hr-buy" })).hires).toEqual([]);
    expect((await buyer.agents.listAgents({ hiredOnly: true })).agents).toEqual([]);

    const second = await buyer.agents.hireAgent({ parent: "accounts/hr-buy", agent: "agents/hr-a" });
    expect(second.hire?.name).not.toBe(first.hire!.name);
    expect(second.agentSlots).toMatchObject({ used: 1n, limit: 1n });
    const all = await buyer.agents.listHires({ parent: "accounts/hr-buy", includeReleased: true });
    expect(all.hires.map((h) => [h.name, h.state])).toEqual([
      [second.hire!.name, HireState.ACTIVE],
      [first.hire!.name, HireState.RELEASED],
    ]);
    // Hires are the project's own business.
    await expectCode(owner.agents.releaseAgent({ name: second.hire!.name }), Code.NotFound);
    await expectCode(owner.agents.listHires({ parent: "accounts/hr-buy" }), Code.NotFound);
    await expectCode(owner.agents.hireAgent({ parent: "accounts/hr-buy", agent: "agents/hr-a" }), Code.NotFound);
  });

  it("a hire outlives the agent becoming invisible to the project: it cannot be invoked, and its project can release it", async () => {
    const owner = await env.project("gone-own");
    const buyer = await env.project("gone-buy");
    await owner.agents.createAgent({ agentId: "gone-a", agent: { pricePerInvocationMicros: 3n, visibility: AgentVisibility.SHARED, sharedWithProjects: ["gone-buy"] } });
    const { hire } = await buyer.agents.hireAgent({ parent: "accounts/gone-buy", agent: "agents/gone-a" });
    const db = env.ts.app.database.db;
    expect(await env.ts.app.agents.agentForInvocation(db, "gone-buy", "agents/gone-a")).toEqual({ name: "agents/gone-a", ownerProject: "gone-own", pricePerInvocationMicros: 3, hireName: hire!.name });

    await owner.agents.updateAgent({ agent: { name: "agents/gone-a", sharedWithProjects: [] }, updateMask: { paths: ["shared_with_projects"] } });
    expect(await env.ts.app.agents.agentForInvocation(db, "gone-buy", "agents/gone-a")).toBeUndefined();
    expect((await buyer.agents.listHires({ parent: "accounts/gone-buy" })).hires.map((h) => h.state)).toEqual([HireState.ACTIVE]);
    await expectCode(buyer.agents.hireAgent({ parent: "accounts/gone-buy", agent: "agents/gone-a" }), Code.NotFound);
    expect((await buyer.agents.releaseAgent({ name: hire!.name })).agentSlots).toMatchObject({ used: 0n });
  });
});

describe("hire rules", () => {
  it("a deprecated agent takes no new hires but serves its hires; a disabled one serves no one", async () => {
    const owner = await env.project("st-own");
    const early = await env.project("st-early");
    const late = await env.project("st-late");
    await owner.agents.createAgent({ agentId: "st-a", agent: { pricePerInvocationMicros: 7n, visibility: AgentVisibility.PUBLIC } });
    const { hire } = await early.agents.hireAgent({ parent: "accounts/st-early", agent: "agents/st-a" });
    const db = env.ts.app.database.db;

    await owner.agents.updateAgent({ agent: { name: "agents/st-a", status: AgentStatus.DEPRECATED }, updateMask: { paths: ["status"] } });
    const refused = await expectCode(late.agents.hireAgent({ parent: "accounts/st-late", agent: "agents/st-a" }), Code.FailedPrecondition);
    expect(refused.rawMessage).toBe("agents/st-a is deprecated: it takes no new hires");
    expect(await env.ts.app.agents.agentForInvocation(db, "st-early", "agents/st-a")).toEqual({ name: "agents/st-a", ownerProject: "st-own", pricePerInvocationMicros: 7, hireName: hire!.name });
    expect(await env.ts.app.agents.agentForInvocation(db, "st-late", "agents/st-a")).toBeUndefined();

    await owner.agents.updateAgent({ agent: { name: "agents/st-a", status: AgentStatus.DISABLED }, updateMask: { paths: ["status"] } });
    expect(await env.ts.app.agents.agentForInvocation(db, "st-early", "agents/st-a")).toBeUndefined();
    expect(await env.ts.app.agents.activeHires(db, "st-early")).toBe(1);
    await expectCode(late.agents.hireAgent({ parent: "accounts/st-late", agent: "agents/st-a" }), Code.FailedPrecondition, /^agents\/st-a is disabled: it takes no new hires$/);

    await owner.agents.updateAgent({ agent: { name: "agents/st-a", status: AgentStatus.ACTIVE }, updateMask: { paths: ["status"] } });
    expect((await late.agents.hireAgent({ parent: "accounts/st-late", agent: "agents/st-a" })).hire?.state).toBe(HireState.ACTIVE);
    expect(await env.ts.app.agents.agentForInvocation(db, "st-early", "agents/st-a")).toEqual({ name: "agents/st-a", ownerProject: "st-own", pricePerInvocationMicros: 7, hireName: hire!.name });
  });

  it("a retried hire with the same request_id returns the first hire; the same id for another agent is refused", async () => {
    const owner = await env.project("rq-own");
    const p = await env.project("rq");
    await env.setPlan("rq", "pro");
    for (const id of ["rq-a", "rq-b"]) await owner.agents.createAgent({ agentId: id, agent: { visibility: AgentVisibility.PUBLIC } });
    const first = await p.agents.hireAgent({ parent: "accounts/rq", agent: "agents/rq-a", requestId: "h-1" });
    const retry = await p.agents.hireAgent({ parent: "accounts/rq", agent: "agents/rq-a", requestId: "h-1" });
    expect(retry).toEqual(first);
    await expectCode(p.agents.hireAgent({ parent: "accounts/rq", agent: "agents/rq-b", requestId: "h-1" }), Code.InvalidArgument, /^request_id: was used to hire agents\/rq-a, not agents\/rq-b$/);
    await expectCode(p.agents.hireAgent({ parent: "accounts/rq", agent: "agents/rq-a", requestId: "h-2" }), Code.AlreadyExists, /already exists/);
    expect(await env.ts.app.agents.activeHires(env.ts.app.database.db, "rq")).toBe(1);
  });

  it("a project without an account cannot hire (NOT_FOUND, not INTERNAL)", async () => {
    const owner = await env.project("na-own");
    await owner.agents.createAgent({ agentId: "na-a", agent: { visibility: AgentVisibility.PUBLIC } });
    const ghost = await env.clients("na-ghost", "admin");
    await expectCode(ghost.agents.hireAgent({ parent: "accounts/na-ghost", agent: "agents/na-a" }), Code.NotFound, /^account "accounts\/na-ghost" not found$/);
    expect((await ghost.agents.listHires({ parent: "accounts/na-ghost" })).hires).toEqual([]);
  });

  it("users may list hires but not hire or release", async () => {
    const owner = await env.project("ur-own");
    await owner.agents.createAgent({ agentId: "ur-a", agent: { visibility: AgentVisibility.PUBLIC } });
    const dev = await env.project("ur");
    const { hire } = await dev.agents.hireAgent({ parent: "accounts/ur", agent: "agents/ur-a" });
    const user = await env.clients("ur", "user");
    expect((await user.agents.listHires({ parent: "accounts/ur" })).hires.map((h) => h.name)).toEqual([hire!.name]);
    await expectCode(user.agents.hireAgent({ parent: "accounts/ur", agent: "agents/ur-a" }), Code.PermissionDenied, /HireAgent needs role developer; the caller is user/);
    await expectCode(user.agents.releaseAgent({ name: hire!.name }), Code.PermissionDenied, /ReleaseAgent needs role developer/);
  });
});

describe("deleting", () => {
  it("needs force while other projects hire the agent, then releases every hire and frees their slots", async () => {
    const owner = await env.project("del-own");
    const user = await env.project("del-user");
    const { agent } = await owner.agents.createAgent({ agentId: "del-a", agent: { visibility: AgentVisibility.PUBLIC } });
    const own = await owner.agents.hireAgent({ parent: "accounts/del-own", agent: "agents/del-a" });
    const theirs = await user.agents.hireAgent({ parent: "accounts/del-user", agent: "agents/del-a" });

    await expectCode(owner.agents.deleteAgent({ name: "agents/del-a" }), Code.FailedPrecondition, /^agents\/del-a is hired by 1 other project\(s\); set force/);
    await expectCode(user.agents.deleteAgent({ name: "agents/del-a", force: true }), Code.PermissionDenied, /belongs to another project/);
    clock.advance(5_000);
    await owner.agents.updateAgent({ agent: { name: "agents/del-a", description: "changed" }, updateMask: { paths: ["description"] } });
    await expectCode(owner.agents.deleteAgent({ name: "agents/del-a", force: true, etag: agent!.etag }), Code.Aborted, /^agents\/del-a has changed since it was read/);
    const { agent: current } = await owner.agents.getAgent({ name: "agents/del-a" });
    await owner.agents.deleteAgent({ name: "agents/del-a", force: true, etag: current!.etag });

    await expectCode(user.agents.getAgent({ name: "agents/del-a" }), Code.NotFound);
    for (const [c, p, hire] of [
      [owner, "del-own", own.hire!],
      [user, "del-user", theirs.hire!],
    ] as const) {
      const hires = (await c.agents.listHires({ parent: `accounts/${p}`, includeReleased: true })).hires;
      expect(hires.map((h) => [h.name, h.state, h.releaseTime])).toEqual([[hire.name, HireState.RELEASED, timestampFromMs(clock.now())]]);
      expect(await slotsOf(c, p)).toMatchObject({ used: 0n });
    }
  });

  it("an agent hired only by its owner is deleted without force", async () => {
    const owner = await env.project("del2");
    await owner.agents.createAgent({ agentId: "del2-a", agent: {} });
    await owner.agents.hireAgent({ parent: "accounts/del2", agent: "agents/del2-a" });
    await owner.agents.deleteAgent({ name: "agents/del2-a" });
    expect(await env.ts.app.agents.activeHires(env.ts.app.database.db, "del2")).toBe(0);
  });
});

describe("creating and changing agents", () => {
  it("returns the stored agent, retries by request_id, refuses taken names and models the project cannot see", async () => {
    const a = await env.project("cr");
    const b = await env.project("cr-b");
    await b.models.createModel({ modelId: "cr-b/pub", model: { visibility: ModelVisibility.PUBLIC } });
    await b.models.createModel({ modelId: "cr-b/priv", model: {} });
    const req = { agentId: "cr-a", agent: { displayName: "A", description: "does a", models: ["models/cr-b/pub"], pricePerInvocationMicros: 1_000_000_000n }, requestId: "c-1" };
    const { agent } = await a.agents.createAgent(req);
    expect(agent).toMatchObject({
      name: "agents/cr-a",
      ownerProject: "cr",
      displayName: "A",
      description: "does a",
      models: ["models/cr-b/pub"],
      pricePerInvocationMicros: 1_000_000_000n,
      status: AgentStatus.ACTIVE,
      visibility: AgentVisibility.PRIVATE,
      sharedWithProjects: [],
      createTime: timestampFromMs(clock.now()),
    });
    expect((await a.agents.getAgent({ name: "agents/cr-a" })).agent).toEqual(agent);
    expect((await a.agents.createAgent(req)).agent).toEqual(agent);
    await expectCode(a.agents.createAgent({ ...req, requestId: "c-2" }), Code.AlreadyExists, /^agent "agents\/cr-a" already exists$/);
    // Agent ids are per project: another project's private id is free to take, and each keeps its own.
    expect((await b.agents.createAgent(req)).agent).toMatchObject({ name: "agents/cr-a", ownerProject: "cr-b" });
    expect((await a.agents.getAgent({ name: "agents/cr-a" })).agent).toEqual(agent);
    await expectCode(a.agents.createAgent({ agentId: "cr-x", agent: { models: ["models/cr-b/priv"] } }), Code.NotFound, /^model "models\/cr-b\/priv" not found$/);
    await expectCode(a.agents.updateAgent({ agent: { name: "agents/cr-a", models: ["models/cr-b/priv"] }, updateMask: { paths: ["models"] } }), Code.NotFound, /model/);
    clock.advance(1_000);
    const { agent: updated } = await a.agents.updateAgent({ agent: { name: "agents/cr-a", pricePerInvocationMicros: 5n, displayName: "not masked" }, updateMask: { paths: ["price_per_invocation_micros"] } });
    expect(updated).toMatchObject({ pricePerInvocationMicros: 5n, displayName: "A", updateTime: timestampFromMs(clock.now()) });
    expect(updated!.etag).not.toBe(agent!.etag);
  });

  it("a developer of one project cannot change another's agent: PERMISSION_DENIED if visible, NOT_FOUND if not", async () => {
    const a = await env.project("own-a");
    const b = await env.project("own-b");
    await a.agents.createAgent({ agentId: "own-pub", agent: { displayName: "kept", visibility: AgentVisibility.PUBLIC } });
    await a.agents.createAgent({ agentId: "own-priv", agent: { displayName: "kept" } });
    const change = (name: string) => b.agents.updateAgent({ agent: { name, displayName: "pwned" }, updateMask: { paths: ["display_name"] } });
    await expectCode(change("agents/own-pub"), Code.PermissionDenied, /^agents\/own-pub belongs to another project$/);
    await expectCode(b.agents.deleteAgent({ name: "agents/own-pub" }), Code.PermissionDenied);
    await expectCode(change("agents/own-priv"), Code.NotFound, /^agent "agents\/own-priv" not found$/);
    await expectCode(b.agents.deleteAgent({ name: "agents/own-priv", force: true }), Code.NotFound);
    const admin = await env.clients("own-b", "admin");
    await expectCode(admin.agents.updateAgent({ agent: { name: "agents/own-pub", status: AgentStatus.DISABLED }, updateMask: { paths: ["status"] } }), Code.PermissionDenied);
    const user = await env.clients("own-a", "user");
    await expectCode(user.agents.updateAgent({ agent: { name: "agents/own-pub", displayName: "u" }, updateMask: { paths: ["display_name"] } }), Code.PermissionDenied, /needs role developer/);
    await expectCode(user.agents.createAgent({ agentId: "own-u", agent: {} }), Code.PermissionDenied, /needs role developer/);
    await expectCode(user.agents.deleteAgent({ name: "agents/own-pub" }), Code.PermissionDenied, /needs role developer/);
    for (const name of ["agents/own-pub", "agents/own-priv"]) expect((await a.agents.getAgent({ name })).agent).toMatchObject({ displayName: "kept", status: AgentStatus.ACTIVE });
  });
});

describe("listing agents", () => {
  it("filters by owner, visibility, model (literally), status and hires; orders by name, price and newest, two per page", async () => {
    const o = await env.project("la");
    const viewer = await env.project("la-view");
    await env.setPlan("la-view", "pro");
    for (const id of ["a_b", "axb"]) await o.models.createModel({ modelId: `la/${id}`, model: { visibility: ModelVisibility.PUBLIC } });
    const specs: Array<[string, bigint, AgentVisibility, string[], AgentStatus]> = [
      ["la-1", 30n, AgentVisibility.PUBLIC, ["models/la/a_b"], AgentStatus.ACTIVE],
      ["la-2", 10n, AgentVisibility.PUBLIC, ["models/la/axb"], AgentStatus.ACTIVE],
      ["la-3", 20n, AgentVisibility.SHARED, ["models/la/a_b", "models/la/axb"], AgentStatus.DEPRECATED],
      ["la-4", 10n, AgentVisibility.PRIVATE, [], AgentStatus.ACTIVE],
      ["la-5", 5n, AgentVisibility.PUBLIC, [], AgentStatus.DISABLED],
    ];
    for (const [id, price, visibility, models, status] of specs) {
      clock.advance(1_000);
      await o.agents.createAgent({ agentId: id, agent: { pricePerInvocationMicros: price, visibility, models, status, sharedWithProjects: visibility === AgentVisibility.SHARED ? ["la-view"] : [] } });
    }
    const pages = async (c: CatalogClients, req: { orderBy?: string; status?: AgentStatus }) => {
      const seen: string[][] = [];
      let pageToken = "";
      do {
        const r = await c.agents.listAgents({ ...req, ownerProject: "la", pageSize: 2, pageToken });
        seen.push(r.agents.map((x) => x.name.slice("agents/".length)));
        pageToken = r.nextPageToken;
      } while (pageToken);
      return seen;
    };
    expect(await pages(o, {})).toEqual([["la-1", "la-2"], ["la-3", "la-4"]]);
    expect(await pages(o, { orderBy: "price_per_invocation" })).toEqual([["la-2", "la-4"], ["la-3", "la-1"]]);
    expect(await pages(o, { orderBy: "create_time desc" })).toEqual([["la-4", "la-3"], ["la-2", "la-1"]]);
    expect(await pages(viewer, { orderBy: "price_per_invocation" })).toEqual([["la-2", "la-3"], ["la-1"]]);
    expect(await pages(o, { status: AgentStatus.DISABLED })).toEqual([["la-5"]]);
    expect(await pages(o, { status: AgentStatus.DEPRECATED })).toEqual([["la-3"]]);

    const list = async (c: CatalogClients, req: Record<string, unknown>) => names((await c.agents.listAgents({ ownerProject: "la", ...req })).agents);
    // `_` is not a wildcard: a_b does not match axb.
    expect(await list(o, { model: "models/la/a_b" })).toEqual(["agents/la-1", "agents/la-3"]);
    expect(await list(o, { model: "models/la/axb" })).toEqual(["agents/la-2", "agents/la-3"]);
    expect(await list(o, { visibility: AgentVisibility.PUBLIC })).toEqual(["agents/la-1", "agents/la-2"]);
    expect(await list(viewer, { visibility: AgentVisibility.PRIVATE })).toEqual([]);
    expect(await list(viewer, { ownerProject: "nobody" })).toEqual([]);
    await viewer.agents.hireAgent({ parent: "accounts/la-view", agent: "agents/la-2" });
    expect(await list(viewer, { hiredOnly: true })).toEqual(["agents/la-2"]);
    expect(await list(o, { hiredOnly: true })).toEqual([]);
    await expectCode(o.agents.listAgents({ pageToken: "AAAA" }), Code.InvalidArgument, /^page_token: /);
  });
});

describe("agent ids per project (issue 14)", () => {
  /** The listed agents whose names start with `prefix`, with their owners. */
  const owners = async (c: CatalogClients, req: Record<string, unknown> = {}, prefix = "agents/ns-") =>
    (await c.agents.listAgents(req)).agents.filter((a) => a.name.startsWith(prefix)).map((a) => `${a.name}@${a.ownerProject}`).sort();

  it("another project's private id is free: create, get, update, hire and delete each reach the caller's own agent", async () => {
    const a = await env.project("ns-a");
    const b = await env.project("ns-b");
    const { agent: secret } = await b.agents.createAgent({ agentId: "ns-x", agent: { displayName: "B's secret", pricePerInvocationMicros: 9n } });
    // A cannot tell B's private agent from a free id: both creates succeed alike, and A sees only its own.
    const { agent: mine } = await a.agents.createAgent({ agentId: "ns-x", agent: { displayName: "A's", pricePerInvocationMicros: 1n } });
    const { agent: free } = await a.agents.createAgent({ agentId: "ns-free", agent: { displayName: "A's", pricePerInvocationMicros: 1n } });
    const same = (x: typeof mine) => ({ ...x, name: "", etag: "" });
    expect(same(mine)).toEqual(same(free));
    expect(mine).toMatchObject({ name: "agents/ns-x", ownerProject: "ns-a", displayName: "A's" });
    expect((await a.agents.getAgent({ name: "agents/ns-x" })).agent).toEqual(mine);
    expect((await b.agents.getAgent({ name: "agents/ns-x" })).agent).toEqual(secret);
    expect(await owners(a)).toEqual(["agents/ns-free@ns-a", "agents/ns-x@ns-a"]);
    expect(await owners(b)).toEqual(["agents/ns-x@ns-b"]);

    await a.agents.updateAgent({ agent: { name: "agents/ns-x", pricePerInvocationMicros: 2n }, updateMask: { paths: ["price_per_invocation_micros"] } });
    expect((await b.agents.getAgent({ name: "agents/ns-x" })).agent).toEqual(secret);
    const { hire } = await a.agents.hireAgent({ parent: "accounts/ns-a", agent: "agents/ns-x" });
    expect(await env.ts.app.agents.agentForInvocation(env.ts.app.database.db, "ns-a", "agents/ns-x")).toEqual({ name: "agents/ns-x", ownerProject: "ns-a", pricePerInvocationMicros: 2, hireName: hire!.name });
    // B hiring its own agent of the same id is a different hire of a different agent.
    await b.agents.hireAgent({ parent: "accounts/ns-b", agent: "agents/ns-x" });

    // The owner deleting releases the hires of its agent only.
    await a.agents.deleteAgent({ name: "agents/ns-x", force: true });
    await expectCode(a.agents.getAgent({ name: "agents/ns-x" }), Code.NotFound, /^agent "agents\/ns-x" not found$/);
    expect((await a.agents.listHires({ parent: "accounts/ns-a", includeReleased: true })).hires.map((h) => h.state)).toEqual([HireState.RELEASED]);
    expect((await b.agents.listHires({ parent: "accounts/ns-b" })).hires.map((h) => [h.agent, h.state])).toEqual([["agents/ns-x", HireState.ACTIVE]]);
    expect((await b.agents.getAgent({ name: "agents/ns-x" })).agent).toEqual(secret);
    const db = env.ts.app.database.db;
    expect(await db.selectFrom("agent_price").select(["owner_project", "price_per_invocation"]).where("agent_id", "=", "ns-x").execute()).toEqual([{ owner_project: "ns-b", price_per_invocation: 9 }]);
  });

  it("public ids are unique among public agents; a project's own agent of the id wins for that project", async () => {
    const a = await env.project("ns-pa");
    const b = await env.project("ns-pb");
    const c = await env.project("ns-pc");
    await a.agents.createAgent({ agentId: "ns-p", agent: { displayName: "A private" } });
    // A's private agent does not hold the public id.
    const { agent: pub } = await b.agents.createAgent({ agentId: "ns-p", agent: { displayName: "B public", visibility: AgentVisibility.PUBLIC } });
    expect(pub).toMatchObject({ ownerProject: "ns-pb" });
    // Taken publicly: going public with it, created or updated, answers ALREADY_EXISTS.
    await expectCode(c.agents.createAgent({ agentId: "ns-p", agent: { visibility: AgentVisibility.PUBLIC } }), Code.AlreadyExists, /^public agent "agents\/ns-p" already exists$/);
    await expectCode(
      a.agents.updateAgent({ agent: { name: "agents/ns-p", visibility: AgentVisibility.PUBLIC }, updateMask: { paths: ["visibility"] } }),
      Code.AlreadyExists,
      /^public agent "agents\/ns-p" already exists$/,
    );
    // C may still keep a private or shared agent of that id; then it sees its own.
    await c.agents.createAgent({ agentId: "ns-p", agent: { displayName: "C shared", visibility: AgentVisibility.SHARED, sharedWithProjects: ["ns-pa"] } });
    expect((await a.agents.getAgent({ name: "agents/ns-p" })).agent).toMatchObject({ ownerProject: "ns-pa", displayName: "A private" });
    expect((await c.agents.getAgent({ name: "agents/ns-p" })).agent).toMatchObject({ ownerProject: "ns-pc" });
    const other = await env.project("ns-pd");
    expect((await other.agents.getAgent({ name: "agents/ns-p" })).agent).toEqual(pub);
    // Lists name each id once, as Get resolves it.
    expect(await owners(a)).toEqual(["agents/ns-p@ns-pa"]);
    expect(await owners(other)).toEqual(["agents/ns-p@ns-pb"]);
    expect(await owners(a, { ownerProject: "ns-pb" })).toEqual([]);
    // Once B's goes private again, the id is free to publish.
    await b.agents.updateAgent({ agent: { name: "agents/ns-p", visibility: AgentVisibility.PRIVATE }, updateMask: { paths: ["visibility"] } });
    await expectCode(other.agents.getAgent({ name: "agents/ns-p" }), Code.NotFound);
    await a.agents.updateAgent({ agent: { name: "agents/ns-p", visibility: AgentVisibility.PUBLIC }, updateMask: { paths: ["visibility"] } });
    expect((await other.agents.getAgent({ name: "agents/ns-p" })).agent).toMatchObject({ ownerProject: "ns-pa" });
    expect((await b.agents.getAgent({ name: "agents/ns-p" })).agent).toMatchObject({ ownerProject: "ns-pb", displayName: "B public" });
  });

  it("a public agent shadows shared ones of the same id; among shared ones the earliest created wins", async () => {
    const viewer = await env.project("ns-sv");
    const first = await env.project("ns-s1");
    const second = await env.project("ns-s2");
    const pub = await env.project("ns-s3");
    await first.agents.createAgent({ agentId: "ns-s", agent: { visibility: AgentVisibility.SHARED, sharedWithProjects: ["ns-sv"] } });
    clock.advance(1);
    await second.agents.createAgent({ agentId: "ns-s", agent: { visibility: AgentVisibility.SHARED, sharedWithProjects: ["ns-sv"] } });
    expect((await viewer.agents.getAgent({ name: "agents/ns-s" })).agent?.ownerProject).toBe("ns-s1");
    expect(await owners(viewer, {}, "agents/ns-s")).toEqual(["agents/ns-s@ns-s1"]);
    await pub.agents.createAgent({ agentId: "ns-s", agent: { visibility: AgentVisibility.PUBLIC } });
    expect((await viewer.agents.getAgent({ name: "agents/ns-s" })).agent?.ownerProject).toBe("ns-s3");
    expect(await owners(viewer, {}, "agents/ns-s")).toEqual(["agents/ns-s@ns-s3"]);
    await pub.agents.deleteAgent({ name: "agents/ns-s" });
    await first.agents.deleteAgent({ name: "agents/ns-s" });
    expect(await owners(viewer, {}, "agents/ns-s")).toEqual(["agents/ns-s@ns-s2"]);
  });

  it("a hire names its agent exactly: after the consumer creates its own agent of the id, the hire still invokes and pays the publisher", async () => {
    const publisher = await env.project("ns-hp");
    const consumer = await env.project("ns-hc", 10_000_000);
    await env.setPlan("ns-hc", "pro");
    await publisher.agents.createAgent({ agentId: "ns-h", agent: { pricePerInvocationMicros: 1_000n, visibility: AgentVisibility.PUBLIC } });
    const { hire } = await consumer.agents.hireAgent({ parent: "accounts/ns-hc", agent: "agents/ns-h" });
    await consumer.agents.createAgent({ agentId: "ns-h", agent: { pricePerInvocationMicros: 5n } });
    // By name, the consumer's own agent (not hired) wins; through the hire, the publisher's agent is charged.
    await expectCode(
      consumer.agents.invokeAgent({ parent: "accounts/ns-hc", target: { case: "agent", value: "agents/ns-h" }, requestId: "n0", operation: "op" }),
      Code.FailedPrecondition,
      /^agents\/ns-h is not hired by this project: HireAgent first$/,
    );
    const inv = await consumer.agents.invokeAgent({ parent: "accounts/ns-hc", target: { case: "hire", value: hire!.name }, requestId: "n1", operation: "op" });
    expect(inv.invocation).toMatchObject({ agent: "agents/ns-h", hire: hire!.name, costMicros: 1_000n });
    const db = env.ts.app.database.db;
    expect(await db.selectFrom("usage_record").select(["agent", "agent_owner"]).where("project_id", "=", "ns-hc").execute()).toEqual([{ agent: "agents/ns-h", agent_owner: "ns-hp" }]);
    expect(await db.selectFrom("publisher_earning").select(["publisher_project", "resource", "gross_micros"]).where("consumer_project", "=", "ns-hc").execute()).toEqual([
      { publisher_project: "ns-hp", resource: "agents/ns-h", gross_micros: 1_000 },
    ]);
    // Hiring by name now hires the consumer's own agent, beside the publisher's.
    const own = await consumer.agents.hireAgent({ parent: "accounts/ns-hc", agent: "agents/ns-h" });
    const mine = await consumer.agents.invokeAgent({ parent: "accounts/ns-hc", target: { case: "agent", value: "agents/ns-h" }, requestId: "n2", operation: "op" });
    expect(mine.invocation).toMatchObject({ hire: own.hire!.name, costMicros: 5n });
    expect(await db.selectFrom("publisher_earning").select("entry_id").where("consumer_project", "=", "ns-hc").execute()).toHaveLength(1);
    // The publisher deleting its agent releases the consumer's hire of it, not of the consumer's own.
    await publisher.agents.deleteAgent({ name: "agents/ns-h", force: true });
    const hires = (await consumer.agents.listHires({ parent: "accounts/ns-hc", includeReleased: true })).hires;
    expect(hires.map((h) => [h.name, h.state]).sort()).toEqual([[hire!.name, HireState.RELEASED], [own.hire!.name, HireState.ACTIVE]].sort());
  });
});
