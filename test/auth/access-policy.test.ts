/**
 * Fail closed: every method of the six services declares an access policy,
 * and a method without one is denied, through the real interceptor chain.
 */
import { type DescMethod, create, createFileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { authorize, policyOf } from "../../src/auth/access-policy.js";
import { createAuthorizeInterceptor } from "../../src/auth/authorize.js";
import { principalKey } from "../../src/auth/principal.js";
import { formstateServices } from "../../src/server/services.js";
import { expectCode } from "../support/expect-error.js";

const admin = { kind: "user" as const, subject: "root", projectId: "p", role: Role.ADMIN, roleSource: "token" as const, expiresAt: 0 };

describe("the policy walk", () => {
  const methods = formstateServices.flatMap((s) => s.methods.map((m: DescMethod) => [`${s.typeName}/${m.name}`, m] as const));

  it("covers all six services", () => {
    expect(formstateServices.map((s) => s.name).sort()).toEqual(
      ["AccountService", "AgentService", "ApiKeyService", "BillingService", "ModelService", "UsageService"],
    );
    expect(methods.length).toBeGreaterThanOrEqual(45);
  });

  it.each(methods)("%s declares a policy that admits somebody", (_name, method) => {
    const policy = policyOf(method);
    expect(policy, "missing (formstate.v1.access) option").toBeDefined();
    expect(policy!.public || policy!.minRole !== Role.UNSPECIFIED || policy!.scope !== Scope.UNSPECIFIED).toBe(true);
  });
});

describe("a method without a policy", () => {
  // A service built at runtime with no (access) option on its method.
  const registry = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: "undeclared.proto",
      package: "test.v1",
      syntax: "proto3",
      messageType: [{ name: "Ping" }],
      service: [{ name: "UndeclaredService", method: [{ name: "Ping", inputType: ".test.v1.Ping", outputType: ".test.v1.Ping" }] }],
    }),
    () => undefined,
  );
  const service = registry.getService("test.v1.UndeclaredService")!;

  it("has no policy", () => {
    expect(policyOf(service.methods[0])).toBeUndefined();
  });

  it("is denied even to an admin, and the handler never runs", async () => {
    let ran = false;
    const transport = createRouterTransport(
      (router) =>
        router.service(service, {
          ping: (req: unknown) => {
            ran = true;
            return req;
          },
        } as never),
      {
        router: {
          interceptors: [
            (next) => (req) => {
              req.contextValues.set(principalKey, admin);
              return next(req);
            },
            createAuthorizeInterceptor(),
          ],
        },
      },
    );
    const client = createClient(service, transport) as unknown as { ping(r: object): Promise<unknown> };
    await expectCode(client.ping({}), Code.PermissionDenied, /no access policy/);
    expect(ran).toBe(false);
    expect(() => authorize(service.methods[0], admin)).toThrow(/no access policy/);
  });
});
