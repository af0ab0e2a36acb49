/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so `buf curl`
 * and grpcurl can list and call methods without a schema. Answers come from
 * a @bufbuild/protobuf file registry of the served files and everything they
 * import.
 */
import { type DescFile, type FileRegistry, create, createFileRegistry, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { file_grpc_health_v1_health } from "../../gen/grpc/health/v1/health_pb.js";
import {
  ServerReflection,
  ServerReflectionResponseSchema,
  file_grpc_reflection_v1_reflection,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionAlpha,
  ServerReflectionResponseSchema as AlphaResponseSchema,
  file_grpc_reflection_v1alpha_reflection,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * A reflection request, structurally: v1 and v1alpha requests both fit, so
 * the logic below is written once for both versions.
 */
export type ReflectionQuery =
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "allExtensionNumbersOfType"; value: string }
  | { case: "listServices"; value: string }
  | { case: undefined; value?: undefined };

/** A reflection answer as a plain init object, valid for the v1 and the v1alpha response schema alike. */
export type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: Array<{ name: string }> } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** The registry behind reflection: the given files, the health and reflection files, and all their imports (WKT included). */
export function reflectionRegistry(files: readonly DescFile[]): FileRegistry {
  const roots = [...files, file_grpc_health_v1_health, file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection];
  const known = new Map<string, DescFile>();
  // Keyed by proto.name ("a/b.proto"): DescFile.name drops the ".proto".
  for (const root of roots) for (const f of withDependencies(root)) known.set(f.proto.name, f);
  // createFileRegistry builds from a FileDescriptorProto and asks for imports by
  // name; answering with the existing DescFile adds it with its own imports.
  const resolve = (name: string) => known.get(name);
  return createFileRegistry(...roots.map((root) => createFileRegistry(root.proto, resolve)));
}

/** A file and everything it imports, transitively, the file first (the order grpc-go sends). */
function withDependencies(file: DescFile): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.set(f.proto.name, f);
    for (const d of f.dependencies) visit(d);
  };
  visit(file);
  return [...seen.values()];
}

/**
 * The file that declares a fully-qualified symbol: a message (nested too), an
 * enum, a service, an extension, a method (`pkg.Svc.Method`), a field or
 * oneof, or an enum value. Enum values are found both by their protobuf name
 * (a sibling of the enum, `pkg.VALUE`, as protoc and grpc-go name them) and as
 * `pkg.Enum.VALUE`, which people type.
 */
function fileOfSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  const direct = registry.get(symbol);
  if (direct) return direct.file;
  const dot = symbol.lastIndexOf(".");
  if (dot < 0) return undefined;
  const scope = symbol.slice(0, dot);
  const member = symbol.slice(dot + 1);
  const parent = registry.get(scope);
  switch (parent?.kind) {
    case "service":
      if (parent.methods.some((m) => m.name === member)) return parent.file;
      break;
    case "message":
      if (parent.fields.some((f) => f.name === member) || parent.oneofs.some((o) => o.name === member)) return parent.file;
      break;
    case "enum":
      if (parent.values.some((v) => v.name === member)) return parent.file;
      break;
  }
  for (const t of registry) {
    if (t.kind === "enum" && scopeOf(t.typeName) === scope && t.values.some((v) => v.name === member)) return t.file;
  }
  return undefined;
}

function scopeOf(typeName: string): string {
  const dot = typeName.lastIndexOf(".");
  return dot < 0 ? "" : typeName.slice(0, dot);
}

/**
 * Answers reflection queries against the registry. Unknown names get an
 * error_response (NOT_FOUND), not a failed call, so the stream goes on.
 */
export function createReflectionResponder(files: readonly DescFile[]): (query: ReflectionQuery) => ReflectionAnswer {
  const registry = reflectionRegistry(files);
  const services: string[] = [];
  for (const t of registry) if (t.kind === "service") services.push(t.typeName);
  services.sort();

  // The file with all its imports: clients build descriptors from the set
  // and cannot without the imports.
  const fileAnswer = (file: DescFile): ReflectionAnswer => ({
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: withDependencies(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  });
  const notFound = (what: string): ReflectionAnswer => ({
    case: "errorResponse",
    value: { errorCode: Code.NotFound, errorMessage: `${what} not found` },
  });

  return (query) => {
    switch (query.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = registry.getFile(query.value);
        return file ? fileAnswer(file) : notFound(`file ${JSON.stringify(query.value)}`);
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(registry, query.value);
        return file ? fileAnswer(file) : notFound(`symbol ${JSON.stringify(query.value)}`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = query.value;
        const extendee = registry.getMessage(containingType);
        const ext = extendee && registry.getExtensionFor(extendee, extensionNumber);
        return ext ? fileAnswer(ext.file) : notFound(`extension ${extensionNumber} of ${JSON.stringify(containingType)}`);
      }
      case "allExtensionNumbersOfType": {
        if (!registry.getMessage(query.value)) return notFound(`message type ${JSON.stringify(query.value)}`);
        const numbers: number[] = [];
        for (const t of registry) if (t.kind === "extension" && t.extendee.typeName === query.value) numbers.push(t.number);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: query.value, extensionNumber: numbers.sort((a, b) => a - b) } };
      }
      default:
        return { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "empty reflection request" } };
    }
  };
}

/**
 * The bidi handler, once for both versions: answer each request as it
 * arrives; `wrap` only puts the answer in that version's response type.
 */
function reflectionStream<Req extends { host: string; messageRequest: ReflectionQuery }, Res>(
  answer: (query: ReflectionQuery) => ReflectionAnswer,
  wrap: (req: Req, answer: ReflectionAnswer) => Res,
): (requests: AsyncIterable<Req>) => AsyncGenerator<Res> {
  return async function* (requests) {
    for await (const req of requests) yield wrap(req, answer(req.messageRequest));
  };
}

/** Registers grpc.reflection.v1 and v1alpha (wire-identical, one responder) over the given files and their imports. */
export function registerReflection(router: ConnectRouter, files: readonly DescFile[]): void {
  const answer = createReflectionResponder(files);
  router.service(ServerReflection, {
    serverReflectionInfo: reflectionStream(answer, (req, messageResponse) =>
      create(ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse }),
    ),
  });
  router.service(ServerReflectionAlpha, {
    serverReflectionInfo: reflectionStream(answer, (req, messageResponse) =>
      create(AlphaResponseSchema, { validHost: req.host, originalRequest: req, messageResponse }),
    ),
  });
}
