/**
 * The access policy of a method: declared in the proto with the `(access)`
 * method option, read here from the method descriptor. Fail closed: a method
 * without a policy is denied to everyone.
 */
import { create, getOption, hasOption } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";
import { type AccessPolicy, AccessPolicySchema, Role, Scope, Tenancy, access } from "../../gen/formstate/v1/access_pb.js";
import { permissionDenied } from "../errors.js";
import { type Principal, roleName, scopeName } from "./principal.js";

/**
 * Third-party services whose protos we cannot annotate: gRPC health and
 * reflection describe the server, not tenant data, and are public.
 */
const infrastructurePolicies: Record<string, AccessPolicy> = {
  "grpc.health.v1.Health": create(AccessPolicySchema, { public: true, tenancy: Tenancy.NONE }),
  "grpc.reflection.v1.ServerReflection": create(AccessPolicySchema, { public: true, tenancy: Tenancy.NONE }),
  "grpc.reflection.v1alpha.ServerReflection": create(AccessPolicySchema, { public: true, tenancy: Tenancy.NONE }),
};

const cache = new WeakMap<DescMethod, AccessPolicy | null>();

/** The method's declared policy, or undefined when it has none. */
export function policyOf(method: DescMethod): AccessPolicy | undefined {
  let policy = cache.get(method);
  if (policy === undefined) {
    policy = hasOption(method, access) ? getOption(method, access) : (infrastructurePolicies[method.parent.typeName] ?? null);
    cache.set(method, policy);
  }
  return policy ?? undefined;
}

/**
 * Throws PERMISSION_DENIED unless the principal may call the method.
 * Authentication (UNAUTHENTICATED for anonymous callers) happens before.
 */
export function authorize(method: DescMethod, principal: Principal): void {
  const policy = policyOf(method);
  const name = `${method.parent.typeName}/${method.name}`;
  if (!policy) throw permissionDenied(`${name} has no access policy and is denied`, "NO_ACCESS_POLICY");
  if (policy.public) return;
  switch (principal.kind) {
    case "anonymous":
      // The authenticate interceptor lets anonymous callers through only to public methods.
      throw permissionDenied(`${name} needs a credential`);
    case "user":
      if (policy.minRole === Role.UNSPECIFIED) throw permissionDenied(`${name} cannot be called with a user token`);
      if (principal.wallet?.scope === "api" && !policy.metered) {
        throw permissionDenied(`${name} is not a metered method: wallet tokens with api scope call metered methods only`, "WALLET_SCOPE_TOO_LOW");
      }
      if (principal.role < policy.minRole) {
        throw permissionDenied(`${name} needs role ${roleName(policy.minRole)}; the caller is ${roleName(principal.role)}`, "ROLE_TOO_LOW");
      }
      return;
    case "api_key":
      if (policy.scope === Scope.UNSPECIFIED) throw permissionDenied(`${name} cannot be called with an API key`);
      if (principal.scope < policy.scope) {
        throw permissionDenied(`${name} needs an API key with scope ${scopeName(policy.scope)}; this key has ${scopeName(principal.scope)}`, "SCOPE_TOO_LOW");
      }
      if (principal.keyKind === "scoped" && !principal.allowedMethods.includes(`/${name}`)) {
        throw permissionDenied(`this scoped key may not call ${name}`, "METHOD_NOT_ALLOWED");
      }
      return;
  }
}

/** The full path of a method, `/pkg.Service/Method`, as scoped keys list them. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}
