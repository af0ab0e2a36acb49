/**
 * The names module: every name it formats parses back to the same parts, every
 * name that parses formats back to the same string, and nothing else parses.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ResourceName,
  agentIdOf,
  collections,
  formatName,
  isKeyName,
  keyName,
  modelIdOf,
  modelName,
  parseAccountName,
  parseChildName,
  parseName,
  projectOfName,
  providerOf,
} from "../../src/names/names.js";

const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
const runs = { seed, numRuns: 300 };

// Segments as the proto patterns allow them (ids, member user ids, model ids with dots).
const segment = fc.stringMatching(/^[A-Za-z0-9._:@|+-]{1,40}$/);
const project = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/);
const resourceName: fc.Arbitrary<ResourceName> = fc.oneof(
  project.map((p) => ({ kind: "account" as const, project: p })),
  project.map((p) => ({ kind: "subscription" as const, project: p })),
  fc.record({ kind: fc.constant("child" as const), project, collection: fc.constantFrom(...collections), id: segment }),
  segment.map((id) => ({ kind: "agent" as const, id })),
  fc.record({ kind: fc.constant("model" as const), provider: segment, model: segment }),
);

describe("names", () => {
  it(`parse(format(n)) = n (seed ${seed})`, () => {
    fc.assert(fc.property(resourceName, (n) => {
      expect(parseName(formatName(n))).toEqual(n);
    }), runs);
  });

  it(`format(parse(s)) = s for any string that parses (seed ${seed})`, () => {
    const text = fc.oneof(fc.string(), resourceName.map(formatName).chain((s) => fc.constantFrom(s, `${s}/`, `/${s}`, s.replace(/\/[^/]*$/, "//x"))));
    fc.assert(
      fc.property(text, (s) => {
        const n = parseName(s);
        if (n) expect(formatName(n)).toBe(s);
      }),
      runs,
    );
  });

  it(`the project of a project name is the one it was formatted with; catalog names have none (seed ${seed})`, () => {
    fc.assert(
      fc.property(resourceName, (n) => {
        const expected = n.kind === "agent" || n.kind === "model" ? undefined : n.project;
        expect(projectOfName(formatName(n))).toBe(expected);
      }),
      runs,
    );
  });

  it("refuses near misses", () => {
    for (const bad of ["", "accounts", "accounts/", "accounts//apiKeys/x", "accounts/p/apiKeys", "accounts/p/apiKeys/", "accounts/p/widgets/x", "accounts/p/apiKeys/x/y", "agents/a/b", "models/openai", "models/openai/gpt/x", "projects/p"]) {
      expect(parseName(bad), bad).toBeUndefined();
      expect(projectOfName(bad), bad).toBeUndefined();
    }
  });

  it("reads one collection at a time", () => {
    expect(parseChildName("accounts/p/apiKeys/k", "apiKeys")).toEqual({ project: "p", id: "k" });
    expect(parseChildName("accounts/p/apiKeys/k", "hires")).toBeUndefined();
    expect(parseAccountName("accounts/p")).toBe("p");
    expect(parseAccountName("accounts/p/apiKeys/k")).toBeUndefined();
  });

  it("takes catalog ids from names or ids", () => {
    expect(agentIdOf("agents/a")).toBe("a");
    expect(agentIdOf("a")).toBe("a");
    expect(modelIdOf(modelName("openai/gpt-4o"))).toBe("openai/gpt-4o");
    expect(modelIdOf("openai/gpt-4o")).toBe("openai/gpt-4o");
    expect(providerOf("models/openai/gpt-4o")).toBe("openai");
  });

  it("tells API key actors from user ids", () => {
    expect(isKeyName(keyName("p", "k"))).toBe(true);
    expect(isKeyName("user-1")).toBe(false);
    expect(isKeyName("accounts/p/members/u")).toBe(false);
  });
});
