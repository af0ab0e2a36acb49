/**
 * effectiveKey (src/keys/key-authority.ts) called directly: the meet of a key
 * and its parent from their stored rows. Parsed scope lists are shared between
 * calls inside the module, so what each call returns must still be its own.
 */
import { describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import type { ApiKeyRow } from "../../src/keys/api-key-repository.js";
import { effectiveKey } from "../../src/keys/key-authority.js";

const row = (o: Partial<ApiKeyRow>): ApiKeyRow =>
  ({
    key_id: "k",
    project_id: "p",
    environment: "live",
    kind: "standard",
    scopes: "read,write",
    status: "active",
    expire_time: null,
    rate_limit_rps: null,
    rate_limit_burst: null,
    spend_cap_micros: null,
    spent_micros: 0,
    allowed_cidrs: "[]",
    allowed_models: "[]",
    allowed_methods: "[]",
    parent_key_id: null,
    ...o,
  }) as ApiKeyRow;

describe("effectiveKey", () => {
  it("meets scopes, models and address lists of a key and its parent", () => {
    const child = row({ key_id: "c", kind: "scoped", parent_key_id: "k", scopes: "read,write", allowed_cidrs: '["10.0.0.0/8"]', allowed_models: '["openai/*"]' });
    const parent = row({ scopes: "read", allowed_cidrs: '["10.1.0.0/16"]', allowed_models: "[]" });
    const e = effectiveKey(child, [parent], 0);
    expect(e.scopes).toEqual([Scope.READ]);
    expect(e.models).toEqual(["openai/*"]);
    expect(e.methods).toEqual([]);
    expect(e.cidrs).toEqual([["10.0.0.0/8"], ["10.1.0.0/16"]]);
    expect(effectiveKey(row({}), [], 0).cidrs).toEqual([]);
  });

  it("each answer is its own: changing one does not change the next", () => {
    const r = row({ scopes: "read,write,admin" });
    const first = effectiveKey(r, [], 0);
    first.scopes.push(Scope.UNSPECIFIED);
    first.scopes.length = 1;
    first.models.push("x/y");
    first.methods.push("/x.Y/Z");
    first.cidrs.push(["0.0.0.0/0"]);
    const next = effectiveKey(r, [], 0);
    expect(next.scopes).toEqual([Scope.READ, Scope.WRITE, Scope.ADMIN]);
    expect([next.models, next.methods, next.cidrs]).toEqual([[], [], []]);
  });
});
