/**
 * Tenancy walk: over every method of every service (from the descriptors),
 * (1) the declared tenancy is sound and every request field that can name a
 * project resource is declared, so a new method without its field fails
 * here; (2) against a real server, project A's admin calls each method naming
 * project B's resources — existing ones, missing ids in B, and a project that
 * does not exist — over Connect, gRPC and gRPC-Web, and never succeeds, and
 * the three answers are the same (code and message, up to the name itself).
 */
import { type DescField, type DescMethod, type DescService, getOption, hasOption } from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { field as validateField } from "../../gen/buf/validate/validate_pb.js";
import { Role, Scope, Tenancy } from "../../gen/formstate/v1/access_pb.js";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { AgentService } from "../../gen/formstate/v1/agent_service_pb.js";
import { ApiKeyService } from "../../gen/formstate/v1/api_key_service_pb.js";
import { ModelService } from "../../gen/formstate/v1/model_service_pb.js";
import { declarationProblems, tenancyOf } from "../../src/auth/tenancy.js";
import { formstateServices } from "../../src/server/services.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { type TestServer, bearer, startTestServer } from "../support/test-server.js";

const methods = formstateServices.flatMap((s: DescService) => s.methods.map((m: DescMethod) => ({ service: s, method: m, id: `${s.name}/${m.name}` })));

/** Request string fields that can name a project resource: `parent`/`name` at the top, or an `accounts/` pattern one level down. */
function projectNameFields(method: DescMethod): string[] {
  const out: string[] = [];
  const pattern = (f: DescField) => (hasOption(f, validateField) ? getOption(f, validateField) : undefined)?.type;
  const isAccountsPattern = (f: DescField) => {
    const rules = pattern(f);
    return rules?.case === "string" && (rules.value.pattern ?? "").startsWith("^accounts/");
  };
  for (const f of method.input.fields) {
    if (f.fieldKind === "scalar" && f.scalar === 9 && (f.name === "parent" || f.name === "name" || isAccountsPattern(f))) out.push(f.name);
    if (f.fieldKind === "message") {
      for (const g of f.message.fields) if (g.fieldKind === "scalar" && (g.name === "name" || isAccountsPattern(g))) out.push(`${f.name}.${g.name}`);
    }
  }
  return out;
}

describe("the tenancy declarations", () => {
  it.each(methods.map((m) => [m.id, m.method] as const))("%s declares a sound tenancy", (_id, method) => {
    expect(declarationProblems(method)).toEqual([]);
  });

  it.each(methods.map((m) => [m.id, m.method] as const))("%s declares every field that names a project resource", (_id, method) => {
    const spec = tenancyOf(method)!;
    const declared = new Set([spec.resourceField, ...spec.relatedFields]);
    // A create-style method names its target by `parent`; the body's own name is output only.
    const createStyle = spec.resourceField === "parent" || (spec.tenancy !== Tenancy.PROJECT && !spec.resourceField);
    const undeclared = projectNameFields(method).filter((f) => !declared.has(f) && !(createStyle && f.includes(".")));
    if (spec.tenancy === Tenancy.PROJECT) expect(undeclared).toEqual([]);
    else if (spec.tenancy === Tenancy.CATALOG) expect(undeclared.filter((f) => !f.endsWith("name"))).toEqual([]);
    else expect(undeclared.filter((f) => !f.includes("."))).toEqual([]);
  });
});

// ---- the live walk ----

const A = "walk-a";
const B = "walk-b";
const NOBODY = "walk-nobody";

/** Names of B's resources (existing), of missing ids in B, or of a project that does not exist. */
interface Names {
  account: string;
  subscription: string;
  key: string;
  keyEvents: string;
  member: string;
  session: string;
  wallet: string;
  hire: string;
  authorization: string;
  spendAlert: string;
  creditTransaction: string;
  agent: string;
  model: string;
}

const namesOf = (p: string, ids: { key: string; hire: string; agent: string; model: string; member: string }): Names => ({
  account: `accounts/${p}`,
  subscription: `accounts/${p}/subscription`,
  key: `accounts/${p}/apiKeys/${ids.key}`,
  keyEvents: `accounts/${p}/apiKeys/${ids.key}`,
  member: `accounts/${p}/members/${ids.member}`,
  session: `accounts/${p}/sessions/s1`,
  wallet: `accounts/${p}/wallets/w1`,
  hire: `accounts/${p}/hires/${ids.hire}`,
  authorization: `accounts/${p}/authorizations/a1`,
  spendAlert: `accounts/${p}/spendAlerts/sa1`,
  creditTransaction: `accounts/${p}/creditTransactions/tx1`,
  agent: `agents/${ids.agent}`,
  model: `models/${ids.model}`,
});

const own = `accounts/${A}`;
const hour = 3600;
const now = () => BigInt(Math.floor(Date.now() / 1000));

/**
 * A valid request for each method naming the given resources. Every method
 * of every service must have one: a new method fails the walk until it does.
 */
const requests: Record<string, (n: Names) => object> = {
  "AccountService/CreateAccount": (n) => ({ account: { name: n.account } }),
  "AccountService/GetAccount": (n) => ({ name: n.account }),
  "AccountService/UpdateAccount": (n) => ({ account: { name: n.account, displayName: "x" }, updateMask: { paths: ["display_name"] } }),
  "AccountService/ListMembers": (n) => ({ parent: n.account }),
  "AccountService/AddMember": (n) => ({ parent: n.account, member: { userId: "mallory", role: Role.USER } }),
  "AccountService/UpdateMember": (n) => ({ member: { name: n.member, role: Role.USER }, updateMask: { paths: ["role"] } }),
  "AccountService/RemoveMember": (n) => ({ name: n.member }),
  "AccountService/CreateWalletChallenge": (n) => ({ parent: n.account, accountId: "eip155:1:0x0000000000000000000000000000000000000001" }),
  "AccountService/BindWallet": (n) => ({ parent: n.account, accountId: "eip155:1:0x0000000000000000000000000000000000000001", nonce: "n", signature: "s" }),
  "AccountService/ListWalletBindings": (n) => ({ parent: n.account }),
  "AccountService/DeleteWalletBinding": (n) => ({ name: n.wallet }),
  "AccountService/ListSessions": (n) => ({ parent: n.account }),
  "AccountService/RevokeSession": (n) => ({ name: n.session }),
  "AccountService/RevokeAllSessions": (n) => ({ parent: n.account }),
  "ApiKeyService/CreateApiKey": (n) => ({ parent: n.account, apiKey: { scopes: [Scope.READ] } }),
  "ApiKeyService/GetApiKey": (n) => ({ name: n.key }),
  "ApiKeyService/ListApiKeys": (n) => ({ parent: n.account }),
  "ApiKeyService/UpdateApiKey": (n) => ({ apiKey: { name: n.key, displayName: "x" }, updateMask: { paths: ["display_name"] } }),
  "ApiKeyService/RevokeApiKey": (n) => ({ name: n.key }),
  "ApiKeyService/RotateApiKey": (n) => ({ name: n.key }),
  "ApiKeyService/CreateScopedKey": (n) => ({ parent: n.account, parentKey: n.key, ttl: { seconds: 60n }, spendCapMicros: 1000n, allowedMethods: ["/formstate.v1.UsageService/RecordUsage"] }),
  "ApiKeyService/VerifyApiKey": () => ({ key: "fs_live_notakey" }),
  "ApiKeyService/ListApiKeyEvents": (n) => ({ parent: n.keyEvents }),
  "UsageService/RecordUsage": (n) => ({ parent: n.account, requestId: "r1", usage: { case: "modelUsage", value: { model: n.model, inputTokens: 1n } }, authorization: n.authorization, apiKey: n.key }),
  "UsageService/AuthorizeUsage": (n) => ({ parent: n.account, requestId: "r1", estimate: { case: "estimatedCostMicros", value: 1000n }, apiKey: n.key }),
  "UsageService/ReleaseAuthorization": (n) => ({ name: n.authorization }),
  "UsageService/CheckEligibility": (n) => ({ parent: n.account, check: { case: "hireAgent", value: n.agent } }),
  "UsageService/GetUsageSummary": (n) => ({ parent: n.account }),
  "UsageService/ListUsageRecords": (n) => ({ parent: n.account, apiKey: n.key }),
  "UsageService/GetUsageTimeseries": (n) => ({ parent: n.account, startTime: { seconds: now() - BigInt(hour) }, granularity: 1 }),
  "UsageService/ForecastUsage": (n) => ({ parent: n.account }),
  "UsageService/BatchRecordUsage": (n) => ({ parent: n.account, requests: [{ requestId: "b1", usage: { case: "modelUsage", value: { model: n.model, inputTokens: 1n } } }] }),
  "UsageService/CreateSpendAlert": (n) => ({ parent: n.account, spendAlert: { apiKey: n.key, threshold: { case: "thresholdMicros", value: 1000n }, endpointUrl: "https://hooks.example.com/x" } }),
  "UsageService/ListSpendAlerts": (n) => ({ parent: n.account }),
  "UsageService/DeleteSpendAlert": (n) => ({ name: n.spendAlert }),
  "UsageService/ListAlertDeliveries": (n) => ({ parent: n.account }),
  "UsageService/WatchAccountEvents": (n) => ({ parent: n.account }),
  "BillingService/GetCreditTransactionReceipt": (n) => ({ name: n.creditTransaction }),
  "BillingService/GetPublisherEarnings": (n) => ({ parent: n.account }),
  "BillingService/LinkPayoutAccount": (n) => ({ parent: n.account, refreshUrl: "http://127.0.0.1/refresh", returnUrl: "http://127.0.0.1/back" }),
  "BillingService/ListPayouts": (n) => ({ parent: n.account }),
  "BillingService/ListPlans": () => ({}),
  "BillingService/GetSubscription": (n) => ({ name: n.subscription }),
  "BillingService/CreateCheckoutSession": (n) => ({ parent: n.account, item: { case: "creditAmountMicros", value: 5_000_000n }, successUrl: "http://127.0.0.1/ok", cancelUrl: "http://127.0.0.1/no" }),
  "BillingService/ProcessCheckout": (n) => ({ parent: n.account, sessionId: "cs_test_walk" }),
  "BillingService/CreatePortalSession": (n) => ({ parent: n.account, returnUrl: "http://127.0.0.1/back" }),
  "BillingService/AddCredits": (n) => ({ parent: n.account, amountMicros: 1000n, reason: "walk", requestId: "w1" }),
  "BillingService/ListCreditTransactions": (n) => ({ parent: n.account }),
  "AgentService/CreateAgent": (n) => ({ agentId: n.agent.slice("agents/".length), agent: {} }),
  "AgentService/GetAgent": (n) => ({ name: n.agent }),
  "AgentService/ListAgents": () => ({ ownerProject: B }),
  "AgentService/UpdateAgent": (n) => ({ agent: { name: n.agent, displayName: "x" }, updateMask: { paths: ["display_name"] } }),
  "AgentService/DeleteAgent": (n) => ({ name: n.agent, force: true }),
  "AgentService/HireAgent": (n) => ({ parent: n.account, agent: n.agent }),
  "AgentService/ReleaseAgent": (n) => ({ name: n.hire }),
  "AgentService/ListHires": (n) => ({ parent: n.account }),
  "AgentService/InvokeAgent": (n) => ({ parent: n.account, target: { case: "hire", value: n.hire }, requestId: "i1", operation: "op", apiKey: n.key }),
  "ModelService/CreateModel": (n) => ({ modelId: n.model.slice("models/".length), model: {} }),
  "ModelService/GetModel": (n) => ({ name: n.model }),
  "ModelService/ListModels": () => ({}),
  "ModelService/UpdateModel": (n) => ({ model: { name: n.model, displayName: "x" }, updateMask: { paths: ["display_name"] } }),
  "ModelService/DeleteModel": (n) => ({ name: n.model }),
};

type Outcome = { ok: true; body: string } | { ok: false; code: Code; message: string };

async function call(transport: Transport, service: DescService, method: DescMethod, req: object): Promise<Outcome> {
  const client = createClient(service, transport) as unknown as Record<string, (r: object, o?: { signal: AbortSignal }) => Promise<unknown> & AsyncIterable<unknown>>;
  try {
    if (method.methodKind === "server_streaming") {
      // A stream's answer is its first message (or its error); then it is cancelled.
      const abort = new AbortController();
      for await (const first of client[method.localName](req, { signal: abort.signal })) {
        abort.abort();
        return { ok: true, body: JSON.stringify(first, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) };
      }
      return { ok: true, body: "(empty stream)" };
    }
    const res = await client[method.localName](req);
    return { ok: true, body: JSON.stringify(res, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) };
  } catch (err) {
    const ce = ConnectError.from(err);
    return { ok: false, code: ce.code, message: ce.rawMessage };
  }
}

/** The answer with the names it echoes replaced by their role, so answers about different names compare. */
function normalized(o: Outcome, n: Names): string {
  let text = o.ok ? `OK ${o.body}` : `${Code[o.code]} ${o.message}`;
  for (const [k, v] of Object.entries(n).sort((x, y) => y[1].length - x[1].length)) text = text.split(v).join(`<${k}>`);
  return text;
}

/**
 * Methods that succeed on a name of B's (agent ids are per project, so
 * CreateAgent with B's private id creates the caller's own agent): the walk
 * below would change the caller's state for the methods after it, so they
 * are checked by their own test, from callers of their own.
 */
const checkedApart = new Set(["AgentService/CreateAgent"]);

describe("the live walk: A naming B's resources", () => {
  let ts: TestServer;
  let transports: Record<string, Transport>;
  let existing: Names;
  let missingInB: Names;
  let noProject: Names;
  let tokenB: string;
  const bSecretsSeen: string[] = [];

  beforeAll(async () => {
    ts = await startTestServer({}, { plans: new Plans(defaultPlans.map((p) => ({ ...p, rateLimit: { requestsPerSecond: 10_000, burst: 10_000 } }))) });
    const tokenA = await ts.token({ projectId: A, role: "admin", subject: "alice" });
    tokenB = await ts.token({ projectId: B, role: "admin", subject: "bob" });
    const b = ts.grpc(tokenB);
    const acctA = createClient(AccountService, ts.grpc(tokenA));
    const acctB = createClient(AccountService, b);
    await acctA.createAccount({ account: {} });
    await acctB.createAccount({ account: {} });
    await acctB.addMember({ parent: `accounts/${B}`, member: { userId: "carol", role: Role.USER } });
    const key = await createClient(ApiKeyService, b).createApiKey({ parent: `accounts/${B}`, apiKey: { scopes: [Scope.WRITE] } });
    bSecretsSeen.push(key.secret);
    await createClient(ModelService, b).createModel({ modelId: `${B}/secret-model`, model: { visibility: 2 } });
    await createClient(AgentService, b).createAgent({ agentId: "walk-b-secret", agent: {} });
    const hire = await createClient(AgentService, b).hireAgent({ parent: `accounts/${B}`, agent: "agents/walk-b-secret" });
    const keyId = key.apiKey!.name.split("/").pop()!;
    const hireId = hire.hire!.name.split("/").pop()!;
    existing = namesOf(B, { key: keyId, hire: hireId, agent: "walk-b-secret", model: `${B}/secret-model`, member: "carol" });
    missingInB = namesOf(B, { key: "nokey", hire: "nohire", agent: "walk-b-nothing", model: `${B}/nothing`, member: "nobody" });
    noProject = namesOf(NOBODY, { key: keyId, hire: hireId, agent: "walk-nobody-x", model: `${NOBODY}/x`, member: "carol" });
    transports = {
      grpc: ts.grpc(tokenA),
      connect: ts.connect(tokenA),
      "grpc-web": createGrpcWebTransport({ baseUrl: ts.url, httpVersion: "1.1", interceptors: bearer(tokenA) }),
    };
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("AgentService/CreateAgent with another project's private id answers as for a free id (agents keyed by owner and id)", async () => {
    const method = AgentService.method.createAgent;
    const id = "AgentService/CreateAgent";
    // Answers compare up to the name and the times (and the etag, which changes with them).
    const comparable = (o: Outcome, n: Names) => {
      if (!o.ok) return normalized(o, n);
      const body = JSON.parse(o.body) as { agent: Record<string, unknown> };
      for (const k of ["createTime", "updateTime", "etag"]) delete body.agent[k];
      return normalized({ ok: true, body: JSON.stringify(body) }, n);
    };
    const bAgents = createClient(AgentService, ts.grpc(tokenB));
    const before = await bAgents.getAgent({ name: existing.agent });
    for (const protocol of Object.keys(transports)) {
      // A caller of its own per protocol: the first create takes the ids in the caller's namespace.
      const caller = `walk-c-${protocol.replace("-", "")}`;
      const token = await ts.token({ projectId: caller, role: "admin", subject: "carl" });
      const transport =
        protocol === "grpc" ? ts.grpc(token) : protocol === "connect" ? ts.connect(token) : createGrpcWebTransport({ baseUrl: ts.url, httpVersion: "1.1", interceptors: bearer(token) });
      const answers = await Promise.all([existing, missingInB, noProject].map(async (n) => ({ n, o: await call(transport, AgentService, method, requests[id](n)) })));
      const where = `${id} over ${protocol}`;
      for (const { o } of answers) {
        expect(o.ok, `${where}: ${o.ok ? "" : o.message}`).toBe(true);
        if (o.ok) expect(JSON.parse(o.body).agent.ownerProject, where).toBe(caller);
      }
      expect(comparable(answers[0].o, answers[0].n), where).toBe(comparable(answers[1].o, answers[1].n));
      expect(comparable(answers[2].o, answers[2].n), where).toBe(comparable(answers[1].o, answers[1].n));
      // The caller's own agent comes back (checked above), then answers Get; B's agent is untouched (below).
      const again = await call(transport, AgentService, AgentService.method.getAgent, { name: existing.agent });
      expect(again.ok && JSON.parse(again.body).agent.ownerProject, where).toBe(caller);
    }
    expect(await bAgents.getAgent({ name: existing.agent })).toEqual(before);
  });

  it("has a request for every method", () => {
    expect(methods.filter((m) => !requests[m.id]).map((m) => m.id)).toEqual([]);
  });

  for (const { service, method, id } of methods) {
    if (checkedApart.has(id)) continue;
    it(`${id}: no success on B's resources, and no difference between B's existing and missing ones`, async () => {
      const spec = tenancyOf(method)!;
      for (const [protocol, transport] of Object.entries(transports)) {
        const answers = await Promise.all([existing, missingInB, noProject].map(async (n) => ({ n, o: await call(transport, service, method, requests[id](n)) })));
        const [onB] = answers;
        const where = `${id} over ${protocol}`;
        if (spec.tenancy === Tenancy.PROJECT) {
          expect(onB.o.ok, `${where} succeeded on B's resources: ${normalized(onB.o, onB.n)}`).toBe(false);
          if (!onB.o.ok) expect(Code[onB.o.code], `${where}: ${onB.o.message}`).toBe(Code[Code.NotFound]);
        }
        if (spec.tenancy === Tenancy.CATALOG && spec.resourceField) {
          expect(onB.o.ok, `${where} reached B's private ${spec.resourceField}`).toBe(false);
        }
        // Same answer whether B's resource exists, B's id is free, or B does not exist at all.
        expect(normalized(answers[1].o, answers[1].n), where).toBe(normalized(onB.o, onB.n));
        if (spec.tenancy === Tenancy.PROJECT) expect(normalized(answers[2].o, answers[2].n), where).toBe(normalized(onB.o, onB.n));
        // Nothing of B's private data comes back in any answer.
        const text = JSON.stringify(answers.map((a) => a.o));
        for (const secret of [...bSecretsSeen, "walk-b-secret", `${B}/secret-model`]) {
          if (text.includes(secret)) {
            // Echoing the requested name in a NOT_FOUND is fine; data in a success is not.
            expect(answers.every((a) => !a.o.ok || !a.o.body.includes(secret)), `${where} answered with B's ${secret}`).toBe(true);
          }
        }
      }
    });
  }

  it("related fields are checked too: A's own parent with B's key, hire or authorization is NOT_FOUND", async () => {
    for (const { service, method, id } of methods) {
      const spec = tenancyOf(method)!;
      for (const related of spec.relatedFields) {
        const req = requests[id](existing) as Record<string, unknown>;
        req[spec.resourceField] = own;
        // Only the related field under test names B; the others are left unset.
        for (const other of spec.relatedFields) if (other !== related) delete req[camel(other)];
        const o = await call(transports.grpc, service, method, req);
        expect(o.ok, `${id} with B's ${related}`).toBe(false);
        if (!o.ok) expect(`${Code[o.code]} ${o.message}`, `${id} with B's ${related}`).toMatch(/^NotFound .*"accounts\/walk-b\//);
      }
    }
  });
});

const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
