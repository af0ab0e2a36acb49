/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so `buf curl`
 * and grpcurl can list and call methods without a schema. Answers come from
 * a @bufbuild/protobuf registry of the served files and their dependencies.
 */
import { type DescFile, type Registry, create, createRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
  file_grpc_reflection_v1_reflection,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionAlpha,
  ServerReflectionRequestSchema as AlphaRequestSchema,
  ServerReflectionResponseSchema as AlphaResponseSchema,
  file_grpc_reflection_v1alpha_reflection,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

/** A file and everything it imports, transitively, the file first. */
function withDependencies(file: DescFile): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.set(f.name, f);
    for (const d of f.dependencies) visit(d);
  };
  visit(file);
  return [...seen.values()];
}

/** The file that defines a fully-qualified symbol: a type, a service, a method, a field or an enum value. */
function fileOfSymbol(registry: Registry, symbol: string): DescFile | undefined {
  const direct = registry.get(symbol);
  if (direct) return direct.file;
  const dot = symbol.lastIndexOf(".");
  if (dot < 0) return undefined;
  const parent = registry.get(symbol.slice(0, dot));
  const member = symbol.slice(dot + 1);
  if (parent?.kind === "service" && parent.methods.some((m) => m.name === member)) return parent.file;
  if (parent?.kind === "message" && parent.fields.some((f) => f.name === member)) return parent.file;
  if (parent?.kind === "enum" && parent.values.some((v) => v.name === member)) return parent.file;
  return undefined;
}

/** Answers one reflection request against the registry. */
export function createReflectionResponder(files: readonly DescFile[]): (req: ServerReflectionRequest) => ServerReflectionResponse {
  const all = [...files, file_grpc_health_v1_health, file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection].flatMap(withDependencies);
  const byName = new Map(all.map((f) => [f.name, f]));
  const registry = createRegistry(...byName.values());
  const services: string[] = [];
  for (const t of registry) if (t.kind === "service") services.push(t.typeName);
  services.sort();

  const fileResponse = (file: DescFile) => ({
    case: "fileDescriptorResponse" as const,
    value: { fileDescriptorProto: withDependencies(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  });
  const error = (code: number, message: string) => ({ case: "errorResponse" as const, value: { errorCode: code, errorMessage: message } });

  return (req) => {
    const m = req.messageRequest;
    let messageResponse: ServerReflectionResponse["messageResponse"];
    switch (m.case) {
      case "listServices":
        messageResponse = { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } } as never;
        break;
      case "fileByFilename": {
        const file = byName.get(m.value);
        messageResponse = (file ? fileResponse(file) : error(NOT_FOUND, `file ${m.value} not found`)) as never;
        break;
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(registry, m.value);
        messageResponse = (file ? fileResponse(file) : error(NOT_FOUND, `symbol ${m.value} not found`)) as never;
        break;
      }
      case "fileContainingExtension": {
        const extendee = registry.getMessage(m.value.containingType);
        const ext = extendee ? registry.getExtensionFor(extendee, m.value.extensionNumber) : undefined;
        messageResponse = (ext ? fileResponse(ext.file) : error(NOT_FOUND, `extension ${m.value.extensionNumber} of ${m.value.containingType} not found`)) as never;
        break;
      }
      case "allExtensionNumbersOfType": {
        if (!registry.getMessage(m.value)) {
          messageResponse = error(NOT_FOUND, `type ${m.value} not found`) as never;
          break;
        }
        const numbers: number[] = [];
        for (const t of registry) if (t.kind === "extension" && t.extendee.typeName === m.value) numbers.push(t.number);
        messageResponse = { case: "allExtensionNumbersResponse", value: { baseTypeName: m.value, extensionNumber: numbers.sort((a, b) => a - b) } } as never;
        break;
      }
      default:
        messageResponse = error(INVALID_ARGUMENT, "empty reflection request") as never;
    }
    return create(ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse });
  };
}

/** Registers both reflection versions; v1alpha shares the v1 logic (the messages are wire-identical). */
export function registerReflection(router: ConnectRouter, files: readonly DescFile[]): void {
  const respond = createReflectionResponder(files);
  router.service(ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield respond(req);
    },
  });
  router.service(ServerReflectionAlpha, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const v1 = respond(fromBinary(ServerReflectionRequestSchema, toBinary(AlphaRequestSchema, req)));
        yield fromBinary(AlphaResponseSchema, toBinary(ServerReflectionResponseSchema, v1));
      }
    },
  });
}
