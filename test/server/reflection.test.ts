/**
 * gRPC server reflection (v1 and v1alpha) on a real HTTP/2 server, over every
 * generated Formstate file: each request kind from Connect's gRPC client,
 * then the real `buf curl` listing services and methods and calling
 * grpc.health.v1.Health/Check with no schema but the reflected one.
 */
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { type DescFile, create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionAlpha,
  ServerReflectionRequestSchema as AlphaRequestSchema,
  ServerReflectionResponseSchema as AlphaResponseSchema,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { HealthStatus, registerHealth } from "../../src/server/health.js";
import { type ReflectionQuery as Query, registerReflection } from "../../src/server/reflection.js";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");
const buf = join(root, "node_modules/.bin/buf");
const genDir = join(root, "gen/formstate/v1");


/** Every `file_*` descriptor exported by gen/formstate/v1/*_pb.ts, whatever files exist today. */
async function formstateFiles(): Promise<DescFile[]> {
  const files: DescFile[] = [];
  for (const name of readdirSync(genDir).filter((n) => n.endsWith("_pb.ts")).sort()) {
    const mod: Record<string, unknown> = await import(pathToFileURL(join(genDir, name)).href);
    for (const [key, value] of Object.entries(mod)) {
      if (key.startsWith("file_") && (value as DescFile | undefined)?.kind === "file") files.push(value as DescFile);
    }
  }
  return files;
}

let files: DescFile[];
let health: HealthStatus;
let server: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let url: string;

beforeAll(async () => {
  files = await formstateFiles();
  health = new HealthStatus(["formstate.v1.AccountService"]);
  health.setAll(true);
  server = http2.createServer(
    connectNodeAdapter({
      routes(router) {
        registerHealth(router, health);
        registerReflection(router, files);
      },
    }),
  );
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const s of sessions) s.destroy();
  if (server) await new Promise((resolve) => server.close(resolve));
});

/** Sends the queries on one bidi stream and collects the answers in order. */
async function reflect(...queries: Query[]): Promise<ServerReflectionResponse[]> {
  const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: url }));
  async function* requests() {
    for (const messageRequest of queries) yield create(ServerReflectionRequestSchema, { host: "formstate.test", messageRequest });
  }
  const out: ServerReflectionResponse[] = [];
  for await (const res of client.serverReflectionInfo(requests())) out.push(res);
  return out;
}

/** The decoded files of a file_descriptor_response; fails the test on any other answer. */
function descriptors(res: ServerReflectionResponse): FileDescriptorProto[] {
  const m = res.messageResponse;
  if (m.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${m.case}: ${JSON.stringify(m.value)}`);
  return m.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

/**
 * The files ordered so each comes after its imports. (createFileRegistry's
 * own resolver walk can add a shared import too late, so order them here.)
 */
function importsFirst(protos: FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(protos.map((p) => [p.name, p]));
  const out: FileDescriptorProto[] = [];
  const visit = (p: FileDescriptorProto | undefined) => {
    if (!p || out.includes(p)) return;
    for (const d of p.dependency) visit(byName.get(d));
    out.push(p);
  };
  for (const p of protos) visit(p);
  return out;
}

/** The name of the file a symbol or extension request resolved to (the first one sent). */
async function fileOf(query: Query): Promise<string> {
  const [res] = await reflect(query);
  return descriptors(res)[0].name;
}

describe("reflection over Connect's gRPC transport", () => {
  it("found the generated Formstate files to serve", () => {
    expect(files.map((f) => f.proto.name)).toContain("formstate/v1/account_service.proto");
  });

  it("list_services names every service, health and both reflection versions included", async () => {
    const [res] = await reflect({ case: "listServices", value: "" });
    expect(res.messageResponse.case).toBe("listServicesResponse");
    const names = res.messageResponse.case === "listServicesResponse" ? res.messageResponse.value.service.map((s) => s.name) : [];
    const expected = [
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      ...files.flatMap((f) => f.services.map((s) => s.typeName)),
    ];
    expect(names).toEqual([...new Set(expected)].sort());
    expect(names).toContain("formstate.v1.AccountService");
  });

  it("file_by_filename returns the file first, then every transitive import, enough to rebuild it", async () => {
    const [res] = await reflect({ case: "fileByFilename", value: "formstate/v1/account_service.proto" });
    const protos = descriptors(res);
    expect(protos[0].name).toBe("formstate/v1/account_service.proto");
    const names = protos.map((p) => p.name);
    for (const dep of [
      "formstate/v1/access.proto",
      "formstate/v1/common.proto",
      "google/protobuf/timestamp.proto",
      "google/protobuf/field_mask.proto",
      "buf/validate/validate.proto",
      "google/protobuf/descriptor.proto", // imported by access.proto only: transitive
    ]) {
      expect(names).toContain(dep);
    }
    expect(new Set(names).size).toBe(names.length);
    // The set is closed under imports: a client can build descriptors from it
    // alone (adding a file whose import is missing throws).
    const rebuilt = createFileRegistry(create(FileDescriptorSetSchema, { file: importsFirst(protos) }));
    expect(rebuilt.getService("formstate.v1.AccountService")?.methods.map((m) => m.name)).toContain("GetAccount");
  });

  it("file_by_filename serves well-known types and the reflection files themselves", async () => {
    expect(await fileOf({ case: "fileByFilename", value: "google/protobuf/timestamp.proto" })).toBe("google/protobuf/timestamp.proto");
    expect(await fileOf({ case: "fileByFilename", value: "grpc/reflection/v1alpha/reflection.proto" })).toBe("grpc/reflection/v1alpha/reflection.proto");
  });

  it.each<[string, string]>([
    ["formstate.v1.AccountService", "formstate/v1/account_service.proto"], // service
    ["formstate.v1.AccountService.GetAccount", "formstate/v1/account_service.proto"], // method
    ["formstate.v1.Account", "formstate/v1/account_service.proto"], // message
    ["formstate.v1.Account.display_name", "formstate/v1/account_service.proto"], // field
    ["grpc.reflection.v1.ServerReflectionRequest.message_request", "grpc/reflection/v1/reflection.proto"], // oneof
    ["google.protobuf.DescriptorProto.ExtensionRange", "google/protobuf/descriptor.proto"], // nested message
    ["formstate.v1.PlanTier", "formstate/v1/common.proto"], // enum
    ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"], // nested enum
    ["formstate.v1.PLAN_TIER_PRO", "formstate/v1/common.proto"], // enum value, protobuf scoping
    ["grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto"], // nested enum value, protobuf scoping
    ["grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING", "grpc/health/v1/health.proto"], // enum value under its enum
    ["formstate.v1.access", "formstate/v1/access.proto"], // extension
    ["buf.validate.field", "buf/validate/validate.proto"], // extension from an import
    ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"], // WKT
  ])("file_containing_symbol %s", async (symbol, file) => {
    expect(await fileOf({ case: "fileContainingSymbol", value: symbol })).toBe(file);
  });

  it("file_containing_extension finds an extension by extendee and number", async () => {
    const query: Query = { case: "fileContainingExtension", value: { containingType: "google.protobuf.MethodOptions", extensionNumber: 51001 } };
    expect(await fileOf(query)).toBe("formstate/v1/access.proto");
  });

  it("all_extension_numbers_of_type lists the known extensions of a message", async () => {
    const [methods, fields] = await reflect(
      { case: "allExtensionNumbersOfType", value: "google.protobuf.MethodOptions" },
      { case: "allExtensionNumbersOfType", value: "google.protobuf.FieldOptions" },
    );
    expect(methods.messageResponse).toMatchObject({ case: "allExtensionNumbersResponse", value: { baseTypeName: "google.protobuf.MethodOptions", extensionNumber: [51001] } });
    expect(fields.messageResponse.case === "allExtensionNumbersResponse" && fields.messageResponse.value.extensionNumber).toContain(1159); // buf.validate.field
  });

  it("answers unknown names with NOT_FOUND error responses and keeps the stream going", async () => {
    const answers = await reflect(
      { case: "fileContainingSymbol", value: "formstate.v1.NoSuchThing" },
      { case: "fileByFilename", value: "nope.proto" },
      { case: "fileContainingExtension", value: { containingType: "google.protobuf.MethodOptions", extensionNumber: 1 } },
      { case: "allExtensionNumbersOfType", value: "formstate.v1.Nope" },
      { case: "fileContainingSymbol", value: "formstate.v1.Account" },
    );
    expect(answers.map((a) => a.messageResponse.case)).toEqual(["errorResponse", "errorResponse", "errorResponse", "errorResponse", "fileDescriptorResponse"]);
    for (const a of answers.slice(0, 4)) {
      expect(a.messageResponse.value).toMatchObject({ errorCode: 5, errorMessage: expect.stringMatching(/not found/) });
    }
    expect(answers[0].messageResponse.value).toMatchObject({ errorMessage: expect.stringContaining("formstate.v1.NoSuchThing") });
    // Each answer echoes its request and host.
    expect(answers[4].originalRequest?.messageRequest).toEqual({ case: "fileContainingSymbol", value: "formstate.v1.Account" });
    expect(answers[4].validHost).toBe("formstate.test");
  });

  it("v1alpha gives the same answers as v1, byte for byte", async () => {
    const queries: Query[] = [
      { case: "listServices", value: "" },
      { case: "fileContainingSymbol", value: "formstate.v1.AccountService" },
      { case: "fileContainingSymbol", value: "missing.Symbol" },
    ];
    const alpha = createClient(ServerReflectionAlpha, createGrpcTransport({ baseUrl: url }));
    async function* requests() {
      for (const messageRequest of queries) yield create(AlphaRequestSchema, { host: "formstate.test", messageRequest });
    }
    const alphaBytes: Uint8Array[] = [];
    for await (const res of alpha.serverReflectionInfo(requests())) alphaBytes.push(toBinary(AlphaResponseSchema, res));
    const v1Bytes = (await reflect(...queries)).map((r) => toBinary(ServerReflectionResponseSchema, r));
    expect(alphaBytes).toHaveLength(3);
    expect(alphaBytes).toEqual(v1Bytes);
  });
});

describe("buf curl through reflection (no --schema)", () => {
  it("--list-services prints every service", async () => {
    const { stdout } = await run(buf, ["curl", "--http2-prior-knowledge", "--list-services", url]);
    const listed = stdout.trim().split("\n").sort();
    const [res] = await reflect({ case: "listServices", value: "" });
    expect(listed).toEqual(res.messageResponse.case === "listServicesResponse" ? res.messageResponse.value.service.map((s) => s.name) : []);
    expect(listed).toContain("formstate.v1.AccountService");
    expect(listed).toContain("grpc.health.v1.Health");
  });

  it.each(["grpc-v1", "grpc-v1alpha"])("--list-methods with --reflect-protocol %s prints our and the health methods", async (protocol) => {
    const { stdout } = await run(buf, ["curl", "--http2-prior-knowledge", "--reflect-protocol", protocol, "--list-methods", url]);
    const methods = stdout.trim().split("\n");
    expect(methods).toContain("formstate.v1.AccountService/GetAccount");
    expect(methods).toContain("grpc.health.v1.Health/Check");
    expect(methods).toContain("grpc.health.v1.Health/Watch");
    expect(methods).toContain("grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
  });

  it.each(["grpc-v1", "grpc-v1alpha"])("calls Health/Check with the reflected schema (--reflect-protocol %s)", async (protocol) => {
    const check = async (service: string) => {
      const { stdout } = await run(buf, [
        "curl", "--http2-prior-knowledge", "--protocol", "grpc", "--reflect-protocol", protocol,
        "-d", JSON.stringify({ service }),
        `${url}/grpc.health.v1.Health/Check`,
      ]);
      return JSON.parse(stdout);
    };
    health.set("formstate.v1.AccountService", Status.NOT_SERVING);
    expect(await check("")).toEqual({ status: "SERVING" });
    expect(await check("formstate.v1.AccountService")).toEqual({ status: "NOT_SERVING" });
    health.set("formstate.v1.AccountService", Status.SERVING);
  });

  it("fails for a method reflection does not know", async () => {
    const err = await run(buf, ["curl", "--http2-prior-knowledge", "-d", "{}", `${url}/formstate.v1.NoSuchService/Get`]).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).not.toBe(0);
    expect(err?.stderr).toMatch(/formstate\.v1\.NoSuchService/);
  });
});
