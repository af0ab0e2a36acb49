/**
 * Reading Formstate's typed error details from a @grpc/grpc-js error.
 *
 * The server sends them the standard gRPC way: trailer `grpc-status-details-bin`
 * holds a serialized `google.rpc.Status` whose `details` (field 3) are
 * `google.protobuf.Any` messages: google.rpc.ErrorInfo, RetryInfo, BadRequest, and
 * formstate.v1.LimitExceeded, PaymentRequired, RetryInfo.
 * grpc-js hands `-bin` metadata over as a Buffer; @bufbuild/protobuf reads the
 * Status and unpacks each Any with the schemas generated in gen/. Used by
 * test/server/grpc-js-details.test.ts; see docs/grpc-js.md.
 */
import type { Metadata } from "@grpc/grpc-js";
import { type Message, type Registry, createRegistry, fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { AnySchema, anyUnpack } from "@bufbuild/protobuf/wkt";
import { file_formstate_v1_errors } from "../../gen/formstate/v1/errors_pb.js";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";

/** The detail types Formstate sends (google.rpc.ErrorInfo, RetryInfo, BadRequest; LimitExceeded, ...). */
export const formstateErrorDetails: Registry = createRegistry(file_google_rpc_error_details, file_formstate_v1_errors);

// google.rpc.Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
const STATUS_DETAILS_FIELD = 3;

/** Every detail of a grpc-js error's status that the registry knows, decoded. */
export function grpcStatusDetails(metadata: Metadata | undefined, registry: Registry = formstateErrorDetails): Message[] {
  const [bin] = metadata?.get("grpc-status-details-bin") ?? [];
  if (!(bin instanceof Uint8Array)) return [];
  const reader = new BinaryReader(bin);
  const details: Message[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === STATUS_DETAILS_FIELD && wireType === WireType.LengthDelimited) {
      const detail = anyUnpack(fromBinary(AnySchema, reader.bytes()), registry);
      if (detail) details.push(detail);
    } else {
      reader.skip(wireType);
    }
  }
  return details;
}
