/**
 * Constructors for the Connect errors Formstate returns. Messages are for
 * clients: precise, and never a secret or a stack trace.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../gen/formstate/v1/errors_pb.js";

const DOMAIN = "formstate.dev";

/** An error with an AIP-193 reason detail (UPPER_SNAKE) a client can branch on. */
export function withReason(code: Code, message: string, reason?: string, metadata: Record<string, string> = {}): ConnectError {
  const details = reason ? [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: DOMAIN, metadata }) }] : [];
  return new ConnectError(message, code, undefined, details);
}

export const invalidArgument = (field: string, problem: string) => withReason(Code.InvalidArgument, `${field}: ${problem}`, "INVALID_ARGUMENT", { field });
export const notFound = (what: string) => withReason(Code.NotFound, `${what} not found`, "NOT_FOUND");
export const alreadyExists = (what: string) => withReason(Code.AlreadyExists, `${what} already exists`, "ALREADY_EXISTS");
export const permissionDenied = (message: string, reason = "PERMISSION_DENIED") => withReason(Code.PermissionDenied, message, reason);
export const unauthenticated = (message: string, reason = "UNAUTHENTICATED") => withReason(Code.Unauthenticated, message, reason);
export const failedPrecondition = (message: string, reason: string) => withReason(Code.FailedPrecondition, message, reason);
export const unimplemented = (method: string) =>
  withReason(Code.Unimplemented, `${method} is not implemented yet (see README: live methods)`, "NOT_IMPLEMENTED");
