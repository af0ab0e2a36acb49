/**
 * Collects the unary method implementations while the routes are registered
 * with Connect, so the gRPC fast path calls exactly the same functions.
 * Connect still gets every registration unchanged.
 */
import type { DescMethod, DescMethodUnary, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";

/** A unary method and its implementation, as Connect would call it. */
export interface UnaryRoute {
  readonly method: DescMethodUnary;
  readonly impl: (req: unknown, ctx: HandlerContext) => unknown;
}

/** Unary routes by request path, `/pkg.Service/Method`. */
export type UnaryRoutes = Map<string, UnaryRoute>;

const pathOf = (m: DescMethod) => `/${m.parent.typeName}/${m.name}`;

/**
 * Wraps `router`: registrations go to Connect as before and unary ones are
 * also recorded in `into`. A registration with its own options (limits,
 * interceptors) is left to Connect alone.
 */
export function recordUnaryRoutes(router: ConnectRouter, into: UnaryRoutes): ConnectRouter {
  const recording: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service, implementation, options) {
      router.service(service, implementation, options);
      if (!options) for (const m of (service as DescService).methods) if (m.methodKind === "unary") into.set(pathOf(m), { method: m as DescMethodUnary, impl: implOf(service, m as DescMethodUnary, implementation) });
      return recording;
    },
    rpc(method, impl, options) {
      router.rpc(method, impl, options);
      if (!options && method.methodKind === "unary") into.set(pathOf(method), { method: method as DescMethodUnary, impl: impl as UnaryRoute["impl"] });
      return recording;
    },
  };
  return recording;
}

/** As Connect's createServiceImplSpec: the bound method, or one answering UNIMPLEMENTED with Connect's message. */
function implOf(service: DescService, m: DescMethodUnary, implementation: object): UnaryRoute["impl"] {
  const fn = (implementation as Record<string, unknown>)[m.localName];
  if (typeof fn === "function") return fn.bind(implementation) as UnaryRoute["impl"];
  const message = `${service.typeName}.${m.name} is not implemented`;
  return () => {
    throw new ConnectError(message, Code.Unimplemented);
  };
}
