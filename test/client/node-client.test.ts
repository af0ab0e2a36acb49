/**
 * The Node client against a real server: every service reachable, limit
 * headers and typed error details readable, and `await using` revoking a
 * scoped key when its scope ends, normally or by a throw.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { ApiKeyStatus } from "../../gen/formstate/v1/api_key_service_pb.js";
import { LimitReason } from "../../gen/formstate/v1/errors_pb.js";
import { createFormstateClient, limitAdvice, readLimitHeaders } from "../../src/client/node.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

let ts: TestServer;
let admin: ReturnType<typeof createFormstateClient>;

beforeAll(async () => {
  ts = await startTestServer();
  admin = createFormstateClient({ baseUrl: ts.url, project: "nodecli", token: await ts.token({ projectId: "nodecli", role: "admin", subject: "nc-admin" }) });
  await admin.accounts.createAccount({ account: { displayName: "Node client" } });
});
afterAll(async () => {
  await ts?.close();
});

describe("createFormstateClient (Node, gRPC over HTTP/2)", () => {
  it("reaches every service", async () => {
    expect((await admin.accounts.getAccount({ name: "accounts/nodecli" })).account?.displayName).toBe("Node client");
    expect((await admin.apiKeys.listApiKeys({ parent: "accounts/nodecli" })).apiKeys).toEqual([]);
    expect((await admin.usage.getUsageSummary({ parent: "accounts/nodecli" })).totals?.costMicros).toBe(0n);
    expect((await admin.billing.listPlans({})).plans).toHaveLength(3);
    // Each service answers through the same client; the catalog's own tests cover its data.
    await admin.models.listModels({});
    await admin.agents.listAgents({});
  });

  it("reads rate-limit headers and decodes typed error details", async () => {
    let headers: Headers | undefined;
    await admin.accounts.getAccount({ name: "accounts/nodecli" }, { onHeader: (h) => (headers = h) });
    const limits = readLimitHeaders(headers!);
    expect(limits.limit).toBe(20);
    expect(limits.remaining).toBeGreaterThanOrEqual(0);
    await admin.apiKeys.createApiKey({ parent: "accounts/nodecli", apiKey: { scopes: [Scope.READ] } });
    await admin.apiKeys.createApiKey({ parent: "accounts/nodecli", apiKey: { scopes: [Scope.READ] } });
    const err = await expectCode(admin.apiKeys.createApiKey({ parent: "accounts/nodecli", apiKey: { scopes: [Scope.READ] } }), Code.FailedPrecondition);
    const advice = limitAdvice(err)!;
    expect(advice.reason).toBe(LimitReason.API_KEY_LIMIT);
    expect(advice.upgradeOptions.length).toBe(2);
    expect(limitAdvice(new ConnectError("plain", Code.Internal))).toBeUndefined();
  });
});

describe("scoped keys with await using", () => {
  it("revokes the key when the scope ends normally", async () => {
    let name = "";
    let secret = "";
    {
      await using task = await admin.scopedKey({ ttlMs: 60_000, spendCapMicros: 1_000n, methods: ["/formstate.v1.AccountService/GetAccount"] });
      name = task.name;
      secret = task.secret;
      expect((await task.client.accounts.getAccount({ name: "accounts/nodecli" })).account?.name).toBe("accounts/nodecli");
    }
    expect((await admin.apiKeys.getApiKey({ name })).apiKey?.status).toBe(ApiKeyStatus.REVOKED);
    const after = createFormstateClient({ baseUrl: ts.url, apiKey: secret });
    await expectCode(after.accounts.getAccount({ name: "accounts/nodecli" }), Code.Unauthenticated, /revoked/);
  });

  it("revokes the key when the scope throws", async () => {
    let secret = "";
    await expect(
      (async () => {
        await using task = await admin.scopedKey({ ttlMs: 60_000, spendCapMicros: 1_000n, methods: ["/formstate.v1.AccountService/GetAccount"] });
        secret = task.secret;
        throw new Error("the agent run failed");
      })(),
    ).rejects.toThrow("the agent run failed");
    await expectCode(createFormstateClient({ baseUrl: ts.url, apiKey: secret }).accounts.getAccount({ name: "accounts/nodecli" }), Code.Unauthenticated, /revoked/);
  });
});
