/**
 * docs/api.md covers the contract the server runs: every method of every
 * service (from gen/, the descriptors the auth interceptor reads) with who
 * may call it as its `(formstate.v1.access)` option says. Freshness against
 * proto/ is `npm test`'s "docs/api.md is fresh" step.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, getOption, hasOption } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AccessPolicySchema, Role, Scope, Tenancy, access } from "../../gen/formstate/v1/access_pb.js";
import { whoMayCall } from "../../scripts/generate-api-docs.js";
import { formstateServices } from "../../src/server/services.js";

const doc = readFileSync(join(import.meta.dirname, "../../docs/api.md"), "utf8");

/** The text of one method's section. */
function section(service: string, method: string): string {
  const start = doc.indexOf(`\n## ${service}\n`);
  expect(start, `## ${service}`).toBeGreaterThan(0);
  const from = doc.indexOf(`\n### ${method}`, start);
  expect(from, `### ${method}`).toBeGreaterThan(start);
  const end = doc.indexOf("\n### ", from + 1);
  return doc.slice(from, end < 0 ? undefined : end);
}

describe("docs/api.md", () => {
  it.each(formstateServices.map((s) => [s.name, s] as const))("documents every method of %s with its access policy", (_name, service) => {
    for (const m of service.methods) {
      const text = section(service.name, m.name);
      expect(text).toContain(`POST /${service.typeName}/${m.name}`);
      const policy = hasOption(m, access) ? getOption(m, access) : undefined;
      expect(text).toContain(`- **Who may call:** ${whoMayCall(policy)}`);
      expect(text).toMatch(/- \*\*Request:\*\* \[\w+\]\(#formstate-v1-\w+\)/);
      expect(text).toMatch(/- \*\*Errors:\*\* /);
    }
  });

  it("says who may call in words for each kind of policy", () => {
    expect(whoMayCall(undefined)).toMatch(/^nobody/);
    expect(whoMayCall(create(AccessPolicySchema, { public: true, minRole: Role.ADMIN }))).toMatch(/^anyone/);
    expect(whoMayCall(create(AccessPolicySchema, { minRole: Role.DEVELOPER, scope: Scope.WRITE, metered: true }))).toBe(
      "users with role **developer** or above; API keys with scope **write** or above; **metered** (also callable by credentials limited to metered calls); no tenancy declared: every call is denied",
    );
    expect(whoMayCall(create(AccessPolicySchema, { minRole: Role.USER, tenancy: Tenancy.NONE }))).toBe("users with role **user** or above; no API key; tenancy **none** (names no project resource)");
    expect(whoMayCall(create(AccessPolicySchema, { scope: Scope.READ, tenancy: Tenancy.PROJECT, resourceField: "parent", relatedFields: ["api_key"] }))).toBe(
      "no signed-in user (JWT); API keys with scope **read** or above; tenancy **project**: `parent` must name the caller's project (and so must `api_key` when set)",
    );
    expect(whoMayCall(create(AccessPolicySchema, { scope: Scope.ADMIN, tenancy: Tenancy.PROJECT, resourceField: "parent", platformAnyProject: true }))).toMatch(/the platform project may name any project$/);
    expect(whoMayCall(create(AccessPolicySchema, { scope: Scope.READ, tenancy: Tenancy.CATALOG, resourceField: "name" }))).toMatch(/tenancy \*\*catalog\*\* \(`name`\)/);
  });
});
