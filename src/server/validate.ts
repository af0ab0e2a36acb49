/**
 * Request validation (protovalidate rules in the proto) whose failures carry
 * google.rpc.BadRequest field violations beside buf.validate.Violations:
 * standard tooling reads the first, protovalidate-aware clients the second.
 */
import { pathToString } from "@bufbuild/protobuf/reflect";
import { ValidationError } from "@bufbuild/protovalidate";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { badRequest, errorInfo } from "../errors.js";

export function createValidationInterceptor(): Interceptor {
  const validate = createValidateInterceptor();
  return (next) => {
    const inner = validate(next);
    return async (req) => {
      try {
        return await inner(req);
      } catch (err) {
        throw err instanceof ConnectError && err.cause instanceof ValidationError ? withBadRequest(err, err.cause) : err;
      }
    };
  };
}

function withBadRequest(err: ConnectError, v: ValidationError): ConnectError {
  const violations = v.violations.map((x) => ({ field: pathToString(x.field), description: `${x.message} [${x.ruleId}]` }));
  err.details.push(errorInfo("INVALID_ARGUMENT", { field: violations[0]?.field ?? "" }), badRequest(violations));
  return err;
}
