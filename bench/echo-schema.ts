/** The echo service's descriptors for Connect, built at runtime (the bench is not part of the contract). */
import { create, createFileRegistry } from "@bufbuild/protobuf";
import type { DescMessage, DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "bench/v1/echo.proto",
    package: "bench.v1",
    syntax: "proto3",
    messageType: [
      { name: "EchoRequest", field: [{ name: "text", number: 1, type: 9, label: 1, jsonName: "text" }] },
      { name: "EchoResponse", field: [{ name: "text", number: 1, type: 9, label: 1, jsonName: "text" }] },
    ],
    service: [{ name: "EchoService", method: [{ name: "Echo", inputType: ".bench.v1.EchoRequest", outputType: ".bench.v1.EchoResponse" }] }],
  }),
  () => undefined,
);

export const EchoService = registry.getService("bench.v1.EchoService") as DescService;
export const EchoRequestSchema = registry.getMessage("bench.v1.EchoRequest") as DescMessage;
