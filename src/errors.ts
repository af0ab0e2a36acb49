/**
 * Constructors for the Connect errors Formstate returns. Messages are for
 * clients: precise, and never a secret or a stack trace. Details are the
 * standard google.rpc ones (ErrorInfo, BadRequest, RetryInfo) that gRPC and
 * Connect tooling already read; our own (LimitExceeded, PaymentRequired) only
 * where a client must act on something those cannot say.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";

/** The ErrorInfo domain of every Formstate error. */
export const ERROR_DOMAIN = "formstate.dev";

/** A google.rpc.ErrorInfo detail: an AIP-193 reason (UPPER_SNAKE) a client can branch on. */
export function errorInfo(reason: string, metadata: Record<string, string> = {}) {
  return { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, metadata }) };
}

/** A google.rpc.BadRequest detail: which fields are wrong and why. */
export function badRequest(violations: { field: string; description: string }[]) {
  return { desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: violations }) };
}

/** An error with an ErrorInfo reason. */
export function withReason(code: Code, message: string, reason?: string, metadata: Record<string, string> = {}): ConnectError {
  return new ConnectError(message, code, undefined, reason ? [errorInfo(reason, metadata)] : []);
}

/** INVALID_ARGUMENT for one field: ErrorInfo (reason INVALID_ARGUMENT, metadata.field) and a BadRequest field violation. */
export const invalidArgument = (field: string, problem: string) =>
  new ConnectError(`${field}: ${problem}`, Code.InvalidArgument, undefined, [errorInfo("INVALID_ARGUMENT", { field }), badRequest([{ field, description: problem }])]);
export const notFound = (what: string) => withReason(Code.NotFound, `${what} not found`, "NOT_FOUND");
export const alreadyExists = (what: string) => withReason(Code.AlreadyExists, `${what} already exists`, "ALREADY_EXISTS");
export const permissionDenied = (message: string, reason = "PERMISSION_DENIED") => withReason(Code.PermissionDenied, message, reason);
export const unauthenticated = (message: string, reason = "UNAUTHENTICATED") => withReason(Code.Unauthenticated, message, reason);
export const failedPrecondition = (message: string, reason: string) => withReason(Code.FailedPrecondition, message, reason);
export const unavailable = (message: string, reason: string) => withReason(Code.Unavailable, message, reason);
export const unimplemented = (method: string) =>
  withReason(Code.Unimplemented, `${method} is not implemented yet (see README: live methods)`, "NOT_IMPLEMENTED");
