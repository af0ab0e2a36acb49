/**
 * "Another project's private agents never show", as a property: random
 * sequences of create, change of visibility and delete by two projects over
 * two agent ids, against a real server (SQLite, or PostgreSQL under
 * `npm run test:pg`). After every step, each project's Get of both ids and
 * its List are compared with an oracle that computes a project's answers
 * from its own agents and the other project's public and shared-with-it
 * agents only: it never reads the other's private agents, so matching it
 * means no answer depends on them. The oracle is written independently of
 * src/catalog (resolution: own, then public, then shared; public ids unique
 * among public agents).
 *
 * FC_RUNS sets the number of runs (default 15), FC_SEED replays a failure.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AgentVisibility } from "../../gen/formstate/v1/agent_service_pb.js";
import { isPostgresUrl } from "../../src/db/database.js";
import { type CatalogClients, useCatalogServer } from "./catalog-support.js";

const RUNS = Number(process.env.FC_RUNS ?? 15);
const env = useCatalogServer();

type Vis = "private" | "public" | "shared";
type Op = { t: "create" | "update"; by: 0 | 1; id: 0 | 1; vis: Vis } | { t: "delete"; by: 0 | 1; id: 0 | 1 };

const wire: Record<Vis, AgentVisibility> = { private: AgentVisibility.PRIVATE, public: AgentVisibility.PUBLIC, shared: AgentVisibility.SHARED };
const visArb = fc.constantFrom<Vis>("private", "public", "shared");
const by = fc.constantFrom<0 | 1>(0, 1);
const id = fc.constantFrom<0 | 1>(0, 1);
// Creates weigh most: the interesting states have both projects holding the same ids.
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant<"create">("create"), by, id, vis: visArb }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant<"update">("update"), by, id, vis: visArb }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant<"delete">("delete"), by, id }), weight: 1 },
);

/** What an answer is, compared: a code, or the owner of the agent named. */
const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
};

let run = 0;

describe("agent ids per project, as a property", () => {
  it("runs on the store DATABASE_URL names: PostgreSQL under `npm run test:pg`, else a SQLite file", () => {
    expect(env.ts.app.database.dialect).toBe(isPostgresUrl(process.env.DATABASE_URL ?? "") ? "postgres" : "sqlite");
  });

  it("a project's answers never depend on the other project's private agents", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 4, maxLength: 16 }), async (ops) => {
        run += 1;
        const projects = [`nsp${run}-a`, `nsp${run}-b`];
        const ids = [`nsp${run}-x`, `nsp${run}-y`];
        const clients: CatalogClients[] = [await env.clients(projects[0]), await env.clients(projects[1])];
        /** The oracle's state: each project's own agents (id -> visibility; shared = shared with the other project). */
        const own: Array<Map<string, Vis>> = [new Map(), new Map()];
        /** What `agents/{id}` names for project p, read from p's own agents and the other's public or shared ones only. */
        const resolve = (p: number, id: string): number | undefined => {
          if (own[p].has(id)) return p;
          const o = 1 - p;
          const v = own[o].get(id);
          return v === "public" || v === "shared" ? o : undefined;
        };
        const otherPublic = (p: number, id: string) => own[1 - p].get(id) === "public";

        for (const op of ops) {
          const p = op.by;
          const id = ids[op.id];
          const c = clients[p].agents;
          const name = `agents/${id}`;
          let expected: string;
          let actual: string;
          if (op.t === "create") {
            expected = own[p].has(id) || (op.vis === "public" && otherPublic(p, id)) ? "AlreadyExists" : "OK";
            const agent = { visibility: wire[op.vis], sharedWithProjects: op.vis === "shared" ? [projects[1 - p]] : [] };
            actual = await codeOf(c.createAgent({ agentId: id, agent }));
            if (expected === "OK") own[p].set(id, op.vis);
          } else if (op.t === "update") {
            const target = resolve(p, id);
            expected = target === undefined ? "NotFound" : target !== p ? "PermissionDenied" : op.vis === "public" && own[p].get(id) !== "public" && otherPublic(p, id) ? "AlreadyExists" : "OK";
            const agent = { name, visibility: wire[op.vis], sharedWithProjects: op.vis === "shared" ? [projects[1 - p]] : [] };
            actual = await codeOf(c.updateAgent({ agent, updateMask: { paths: ["visibility", "shared_with_projects"] } }));
            if (expected === "OK") own[p].set(id, op.vis);
          } else {
            const target = resolve(p, id);
            expected = target === undefined ? "NotFound" : target !== p ? "PermissionDenied" : "OK";
            actual = await codeOf(c.deleteAgent({ name, force: true }));
            if (expected === "OK") own[p].delete(id);
          }
          expect(actual, `${JSON.stringify(op)} in ${JSON.stringify(ops)}`).toBe(expected);

          // Both projects' views, after every step.
          for (const q of [0, 1]) {
            for (const i of ids) {
              const want = resolve(q, i);
              let got: string;
              try {
                got = (await clients[q].agents.getAgent({ name: `agents/${i}` })).agent!.ownerProject;
              } catch (err) {
                got = Code[ConnectError.from(err).code];
              }
              expect(got, `project ${q} Get ${i} after ${JSON.stringify(op)}`).toBe(want === undefined ? "NotFound" : projects[want]);
            }
            const listed = (await clients[q].agents.listAgents({})).agents.filter((a) => ids.includes(a.name.slice("agents/".length)));
            const wantList = ids.flatMap((i) => (resolve(q, i) === undefined ? [] : [`agents/${i}@${projects[resolve(q, i)!]}`]));
            expect(listed.map((a) => `${a.name}@${a.ownerProject}`).sort(), `project ${q} List after ${JSON.stringify(op)}`).toEqual(wantList.sort());
          }
        }
      }),
      { numRuns: RUNS, seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined },
    );
  }, 120_000);
});
