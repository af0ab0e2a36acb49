import type { Interceptor } from "@connectrpc/connect";
import { authorize } from "./access-policy.js";
import { principalKey } from "./principal.js";

/** The access-policy interceptor: runs after authentication, before validation and the handler. */
export function createAuthorizeInterceptor(): Interceptor {
  return (next) => (req) => {
    authorize(req.method, req.contextValues.get(principalKey));
    return next(req);
  };
}
