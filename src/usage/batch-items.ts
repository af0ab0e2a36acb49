/**
 * BatchRecordUsage's per-item plumbing: each item is validated on its own
 * (the batch message skips its items' rules so an invalid item fails alone),
 * and each item's error becomes a BatchItemError with the code, message and
 * typed details the single call would have answered.
 */
import { create } from "@bufbuild/protobuf";
import { AnySchema, anyPack } from "@bufbuild/protobuf/wkt";
import { createValidator, violationsToProto } from "@bufbuild/protovalidate";
import { Code, ConnectError } from "@connectrpc/connect";
import { type BatchItemError, BatchItemErrorSchema, type RecordUsageRequest, RecordUsageRequestSchema } from "../../gen/formstate/v1/usage_service_pb.js";

const validator = createValidator();

/** The error an invalid item gets (the validate interceptor's for a single call), or undefined when valid. */
export function itemViolation(item: RecordUsageRequest): ConnectError | undefined {
  const result = validator.validate(RecordUsageRequestSchema, item);
  if (result.kind === "valid") return undefined;
  const details = [];
  if (result.kind === "invalid") {
    const [value, desc] = violationsToProto(result.violations);
    details.push({ desc, value });
  }
  return new ConnectError(result.error.message, Code.InvalidArgument, undefined, details);
}

/** A ConnectError as the item's google.rpc.Status-shaped answer. */
export function toItemError(err: ConnectError): BatchItemError {
  return create(BatchItemErrorSchema, {
    code: err.code,
    message: err.rawMessage,
    details: err.details.map((d) =>
      "desc" in d ? anyPack(d.desc, create(d.desc, d.value)) : create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value }),
    ),
  });
}
