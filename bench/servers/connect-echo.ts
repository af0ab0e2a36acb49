/** Row 2: the same echo on Formstate's server stack (Connect + our one-port listener), no interceptors. */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { listen } from "../../src/server/listener.js";
import { EchoService } from "../echo-schema.js";

const handler = connectNodeAdapter({
  routes: (router) => router.service(EchoService, { echo: (req: { text: string }) => ({ text: req.text }) } as never),
});
const listener = await listen(handler, { host: "127.0.0.1", port: 0 });
console.log(`PORT ${listener.port}`);
process.on("SIGTERM", () => void listener.close(1000).then(() => process.exit(0)));
