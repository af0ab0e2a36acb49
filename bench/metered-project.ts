/**
 * The project the in-process write-path benches meter against: account
 * `demo`, a read/write API key, a trillion micro-USD of credits and a private
 * model `demo/model`, made through the real RPCs of a server on the app
 * (stopped again). Returns the key's caller, as authentication makes it.
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Scope } from "../gen/formstate/v1/access_pb.js";
import { AccountService } from "../gen/formstate/v1/account_service_pb.js";
import { ApiKeyService } from "../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../gen/formstate/v1/billing_service_pb.js";
import { ModelService, ModelVisibility } from "../gen/formstate/v1/model_service_pb.js";
import type { App } from "../src/app.js";
import { startServer } from "../src/server/server.js";

export async function prepareMeteredProject(app: App) {
  const server = await startServer(app);
  try {
    const token = await app.devIssuer!.sign({ subject: "dev-admin", projectId: "demo", role: "admin" });
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}`, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] });
    await createClient(AccountService, transport).createAccount({ account: {} });
    const { secret } = await createClient(ApiKeyService, transport).createApiKey({ parent: "accounts/demo", apiKey: { displayName: "bench", scopes: [Scope.READ, Scope.WRITE] } });
    await createClient(BillingService, transport).addCredits({ parent: "accounts/demo", amountMicros: 1_000_000_000_000n, reason: "bench", requestId: "bench-credits" });
    await createClient(ModelService, transport).createModel({ modelId: "demo/model", model: { displayName: "bench", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 2_000_000n, visibility: ModelVisibility.PRIVATE } });
    return await app.apiKeys.authenticate(secret, "127.0.0.1");
  } finally {
    await server.stop();
  }
}
