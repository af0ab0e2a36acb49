/**
 * Row 2: the same echo on Formstate's server stack (our one-port listener, the
 * unary gRPC fast path, Connect for everything else), no interceptors.
 * FORMSTATE_GRPC_FAST_PATH=0 serves it through Connect alone, as before the fast path.
 */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createGrpcFastPath } from "../../src/server/fast-path/grpc-unary.js";
import { type UnaryRoutes, recordUnaryRoutes } from "../../src/server/fast-path/unary-routes.js";
import { listen } from "../../src/server/listener.js";
import { EchoService } from "../echo-schema.js";

const routes: UnaryRoutes = new Map();
const connect = connectNodeAdapter({
  routes: (router) => void recordUnaryRoutes(router, routes).service(EchoService, { echo: (req: { text: string }) => ({ text: req.text }) } as never),
});
const fast = process.env.FORMSTATE_GRPC_FAST_PATH === "0" ? undefined : createGrpcFastPath({ routes, interceptors: [] });
const listener = await listen((req, res) => void (fast?.(req, res) || connect(req as never, res as never)), { host: "127.0.0.1", port: 0 });
console.log(`PORT ${listener.port}`);
process.on("SIGTERM", () => void listener.close(1000).then(() => process.exit(0)));
