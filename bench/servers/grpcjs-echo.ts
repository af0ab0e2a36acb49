/** Row 1: a bare echo on a plain @grpc/grpc-js server. Prints the port when ready. */
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const def = protoLoader.loadSync(join(import.meta.dirname, "../echo.proto"));
const pkg = grpc.loadPackageDefinition(def) as any;
const server = new grpc.Server();
server.addService(pkg.bench.v1.EchoService.service, {
  echo: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { text: call.request.text }),
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(`PORT ${port}`);
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
