/**
 * On PostgreSQL, metering writes are scoped to their project: while another
 * writer holds project A's write lock, RecordUsage for project B answers and
 * RecordUsage for A waits for it (so A's balance checks are never split).
 * SQLite has one writer at a time by design; this runs in `npm run test:pg`.
 */
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ModelService, ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import * as ledger from "../../src/ledger/ledger.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const onPostgres = /^postgres(ql)?:\/\//.test(process.env.DATABASE_URL ?? "");
if (!onPostgres) console.warn("metering-scope: PostgreSQL only, runs in `npm run test:pg`");

// Row locks per project exist only on PostgreSQL (SQLite has one writer); the SQLite passes skip this file.
describe.skipIf(!onPostgres)("metering scoped to the project on PostgreSQL", () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer();
  });
  afterAll(async () => {
    await ts?.close();
  });

  async function project(projectId: string) {
    const admin = await ts.token({ projectId, role: "admin" });
    await createClient(AccountService, ts.grpc(admin)).createAccount({ account: {} });
    await createClient(ModelService, ts.grpc(admin)).createModel({ modelId: `${projectId}/m`, model: { displayName: "m", inputPriceMicrosPerMillion: 1_000_000n, outputPriceMicrosPerMillion: 0n, visibility: ModelVisibility.PRIVATE } });
    await ts.app.database.transaction((tx) => ledger.book(tx, { projectId, kind: "grant", amountMicros: 1_000_000, idempotencyKey: `g-${projectId}` }, Date.now()));
    const usage = createClient(UsageService, ts.grpc(await ts.token({ projectId, role: "developer" })));
    return (id: string) => usage.recordUsage({ parent: `accounts/${projectId}`, requestId: id, usage: { case: "modelUsage", value: { model: `models/${projectId}/m`, inputTokens: 10n } } });
  }

  it("another project's usage is recorded while project A's lock is held; A's own waits for it", async () => {
    const recordA = await project("scope-a");
    const recordB = await project("scope-b");
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const holding = new Promise<void>((r) => (entered = r));
    const events: string[] = [];
    const lockA = ts.app.database.transaction(async () => {
      entered();
      await released;
      events.push("A lock released");
    }, { scope: "scope-a" });
    await holding;
    const a = recordA("a1").then(() => events.push("A recorded"));
    await recordB("b1");
    events.push("B recorded");
    // A is still waiting for its project's lock.
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toEqual(["B recorded"]);
    release();
    await Promise.all([lockA, a]);
    expect(events).toEqual(["B recorded", "A lock released", "A recorded"]);
  });
});
