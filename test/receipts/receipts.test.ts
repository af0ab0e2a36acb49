/**
 * Signed receipts: every ledger entry of an account (usage debits included)
 * fetched as a JWS from a real server, verified offline against the keys the
 * server publishes, chained by hash entry to entry; a tampered, forged or
 * re-ordered receipt fails; an entry edited in the database after its receipt
 * no longer verifies; another project's entry is NOT_FOUND; the CLI's
 * `formstate receipt verify` agrees (exit 0 / 1 / 2). A property test over
 * random ledgers: the chain verifies, and changing any field of any entry
 * breaks it.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, createClient } from "@connectrpc/connect";
import fc from "fast-check";
import { SignJWT, calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { BillingService } from "../../gen/formstate/v1/billing_service_pb.js";
import { UsageService } from "../../gen/formstate/v1/usage_service_pb.js";
import { createFormstateClient } from "../../src/client/node.js";
import { Plans, defaultPlans } from "../../src/plans/plans.js";
import { GENESIS_HASH, RECEIPT_ISSUER, RECEIPT_TYP, type ReceiptClaim, entryHash, entryOf } from "../../src/receipts/receipt-chain.js";
import { verifyReceipts } from "../../src/receipts/receipt-verify.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const plans = new Plans(defaultPlans.map((p) => ({ ...p, includedCreditsMicros: 0 })));
const P = "receipts";
let ts: TestServer;
let billing: ReturnType<typeof createClient<typeof BillingService>>;
let jwks: { keys: Array<Record<string, unknown>> };
const dir = mkdtempSync(join(tmpdir(), "formstate-receipts-"));

const claimOf = (jws: string) => decodeJwt(jws).receipt as ReceiptClaim;

let cached: string[] | undefined;
/** Every entry's receipt, fetched once (the user's rate limit is 10 calls a second). */
async function allReceipts(): Promise<string[]> {
  if (cached) return cached;
  const { creditTransactions } = await billing.listCreditTransactions({ parent: `accounts/${P}`, pageSize: 1000 });
  const out: string[] = [];
  for (const t of creditTransactions) out.push((await billing.getCreditTransactionReceipt({ name: t.name })).receipt);
  cached = out;
  return out;
}

beforeAll(async () => {
  ts = await startTestServer({}, { plans });
  const admin = await ts.token({ projectId: P, role: "admin" });
  const c = createFormstateClient({ baseUrl: ts.url, token: admin });
  await c.accounts.createAccount({ account: {} });
  await c.models.createModel({ modelId: `${P}/m`, model: { inputPriceMicrosPerMillion: 1_000_000n } });
  await c.billing.addCredits({ parent: `accounts/${P}`, amountMicros: 100_000n, reason: "test", requestId: "g1" });
  const usage = createClient(UsageService, ts.connect(await ts.token({ projectId: P, role: "developer" })));
  for (let i = 1; i <= 5; i++) await usage.recordUsage({ parent: `accounts/${P}`, requestId: `u${i}`, usage: { case: "modelUsage", value: { model: `models/${P}/m`, inputTokens: BigInt(i * 1000) } } });
  billing = createClient(BillingService, ts.connect(await ts.token({ projectId: P, role: "user" })));
  jwks = (await (await fetch(`${ts.url}/.well-known/receipt-keys.json`)).json()) as typeof jwks;
}, 60_000);
afterAll(async () => {
  await ts?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("receipts from the server", () => {
  it("every entry, debits included, is a signed receipt chained to the one before, verifiable with the published keys", async () => {
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).not.toHaveProperty("d");
    const receipts = await allReceipts();
    expect(receipts).toHaveLength(6); // the grant and five debits
    const claims = receipts.map(claimOf).sort((a, b) => Number(a.seq) - Number(b.seq));
    expect(claims[0]).toMatchObject({ seq: "1", kind: "grant", amount_micros: "100000", previous_entry_hash: GENESIS_HASH });
    expect(claims.slice(1).map((c) => [c.kind, c.amount_micros, c.balance_after_micros])).toEqual([
      ["usage_debit", "-1000", "99000"],
      ["usage_debit", "-2000", "97000"],
      ["usage_debit", "-3000", "94000"],
      ["usage_debit", "-4000", "90000"],
      ["usage_debit", "-5000", "85000"],
    ]);
    expect(claims[1].usage_record).toMatch(new RegExp(`^accounts/${P}/usageRecords/`));
    for (let i = 1; i < claims.length; i++) expect(claims[i].previous_entry_hash).toBe(claims[i - 1].entry_hash);
    const report = await verifyReceipts(receipts, jwks);
    expect(report).toMatchObject({ ok: true, linksChecked: 5, gaps: [], problems: [] });
    // The response states the chain too, and where the keys are.
    const one = await billing.getCreditTransactionReceipt({ name: claims[2].transaction });
    expect(one).toMatchObject({ entryHash: claims[2].entry_hash, previousEntryHash: claims[1].entry_hash, jwksUri: `${ts.url}/.well-known/receipt-keys.json` });
    // Asked again, the same chain.
    expect(claimOf(one.receipt).entry_hash).toBe(claims[2].entry_hash);
  });

  it("refuses tampered, forged and out-of-chain receipts, and reports gaps", async () => {
    const receipts = await allReceipts();
    const bySeq = new Map(receipts.map((r) => [Number(claimOf(r).seq), r]));
    // Tampered payload: the signature no longer matches.
    const [h, p, s] = bySeq.get(3)!.split(".");
    const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as { receipt: ReceiptClaim };
    claims.receipt.amount_micros = "-1";
    const tampered = [h, Buffer.from(JSON.stringify(claims)).toString("base64url"), s].join(".");
    expect((await verifyReceipts([tampered], jwks)).problems[0]).toMatch(/signature/);
    // Forged: a consistent receipt signed with another key.
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    const kid = String(jwks.keys[0].kid);
    const forged = await new SignJWT({ receipt: claims.receipt }).setProtectedHeader({ alg: "EdDSA", kid, typ: RECEIPT_TYP }).setIssuer(RECEIPT_ISSUER).setSubject(`accounts/${P}`).sign(privateKey);
    expect((await verifyReceipts([forged], jwks)).ok).toBe(false);
    // A subset with a hole: verified, the hole reported.
    const holey = await verifyReceipts([bySeq.get(1)!, bySeq.get(2)!, bySeq.get(5)!], jwks);
    expect(holey).toMatchObject({ ok: true, linksChecked: 1, gaps: [`accounts/${P}: seq 3..4`] });
  });

  it("an entry edited in the database after its receipt no longer verifies", async () => {
    const receipts = await allReceipts();
    const target = claimOf(receipts.find((r) => claimOf(r).seq === "4")!);
    const txId = target.transaction.split("/").pop()!;
    await ts.app.database.db.updateTable("credit_transaction").set({ amount_micros: -1 }).where("tx_id", "=", txId).execute();
    try {
      const again = (await billing.getCreditTransactionReceipt({ name: target.transaction })).receipt;
      const report = await verifyReceipts([again], jwks);
      expect(report.ok).toBe(false);
      expect(report.problems[0]).toMatch(/entry_hash does not match/);
    } finally {
      await ts.app.database.db.updateTable("credit_transaction").set({ amount_micros: Number(target.amount_micros) }).where("tx_id", "=", txId).execute();
    }
  });

  it("a statement holding both ledgers of a project (live and a test key's sandbox, each with its own seq) verifies as two chains", async () => {
    const admin = createFormstateClient({ baseUrl: ts.url, token: await ts.token({ projectId: P, role: "admin" }) });
    const { secret } = await admin.apiKeys.createApiKey({ parent: `accounts/${P}`, apiKey: { displayName: "sandbox", scopes: [Scope.READ, Scope.WRITE], environment: KeyEnvironment.TEST } });
    const sandbox = createFormstateClient({ baseUrl: ts.url, apiKey: secret });
    await sandbox.usage.recordUsage({ parent: `accounts/${P}`, requestId: "t1", usage: { case: "modelUsage", value: { model: `models/${P}/m`, inputTokens: 7n } } });
    const { creditTransactions } = await sandbox.billing.listCreditTransactions({ parent: `accounts/${P}` });
    expect(creditTransactions.length).toBeGreaterThanOrEqual(2); // the month's sandbox top-up and the debit
    const test: string[] = [];
    for (const t of creditTransactions) test.push((await sandbox.billing.getCreditTransactionReceipt({ name: t.name })).receipt);
    expect(test.map((r) => claimOf(r).environment)).toEqual(test.map(() => "test"));
    const live = await allReceipts();
    const report = await verifyReceipts([...live, ...test], jwks);
    expect(report).toMatchObject({ problems: [], ok: true, linksChecked: live.length - 1 + test.length - 1, gaps: [] });
  });

  it("another project's entry is not found; a malformed name is refused", async () => {
    const other = createClient(BillingService, ts.connect(await ts.token({ projectId: "someone-else", role: "admin" })));
    const { creditTransactions } = await billing.listCreditTransactions({ parent: `accounts/${P}` });
    await expectCode(other.getCreditTransactionReceipt({ name: creditTransactions[0].name }), Code.NotFound);
    await expectCode(billing.getCreditTransactionReceipt({ name: `accounts/${P}/creditTransactions/nope` }), Code.NotFound);
    await expectCode(billing.getCreditTransactionReceipt({ name: "receipts/x" }), Code.InvalidArgument);
  });
});

describe("formstate receipt verify", { timeout: 180_000 }, () => {
  const run = promisify(execFile);
  const bin = join(import.meta.dirname, "../../bin/formstate.js");
  async function cli(...args: string[]) {
    try {
      const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd: tmpdir() });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  }

  it("verifies a statement file offline (exit 0), fails a tampered one (exit 1), refuses bad usage (exit 2)", async () => {
    const receipts = await allReceipts();
    const jwksFile = join(dir, "keys.json");
    writeFileSync(jwksFile, JSON.stringify(jwks));
    const good = join(dir, "statement.txt");
    writeFileSync(good, receipts.join("\n"));
    const ok = await cli("receipt", "verify", good, "--jwks", jwksFile);
    expect(ok.stdout).toMatch(/^OK: 6 of 6 receipts verified, 5 chain links checked/);
    expect(ok.code).toBe(0);
    const [h, p, s] = receipts[0].split(".");
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ receipts: [...receipts.slice(1), [h, p, s.slice(0, -4) + (s.endsWith("AAAA") ? "BBBB" : "AAAA")].join(".")] }));
    const failed = await cli("receipt", "verify", bad, "--jwks", jwksFile, "--json");
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({ ok: false });
    expect((await cli("receipt", "verify", good)).code).toBe(2);
  });
});

describe("the chain (property)", () => {
  it("a random ledger's receipts verify, and changing any field of any entry breaks them", async () => {
    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    const pub = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(pub);
    const keys = { keys: [{ ...pub, kid, alg: "EdDSA" }] };
    const sign = (c: ReceiptClaim) => new SignJWT({ receipt: c }).setProtectedHeader({ alg: "EdDSA", kid, typ: RECEIPT_TYP }).setIssuer(RECEIPT_ISSUER).setSubject(c.account).sign(privateKey);
    const entryArb = fc.record({ kind: fc.constantFrom("grant", "usage_debit", "purchase", "hold", "refund"), amount: fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }), description: fc.string({ maxLength: 20 }) });
    const fields = ["environment", "kind", "amount_micros", "balance_after_micros", "idempotency_key", "description", "usage_record", "actor", "create_time", "seq"] as const;
    await fc.assert(
      fc.asyncProperty(fc.array(entryArb, { minLength: 2, maxLength: 8 }), fc.nat(), fc.constantFrom(...fields), async (entries, pick, field) => {
        let prev = GENESIS_HASH;
        let balance = 0n;
        const claims: ReceiptClaim[] = entries.map((e, i) => {
          balance += e.amount;
          const entry = entryOf({ tx_id: `t${i}`, project_id: "p", environment: "live", seq: i + 1, kind: e.kind, amount_micros: e.amount, balance_after_micros: balance, idempotency_key: `k${i}`, description: e.description, usage_record_id: null, actor: "", create_time: 1_700_000_000_000 + i });
          const claim = { ...entry, previous_entry_hash: prev, entry_hash: entryHash(prev, entry) };
          prev = claim.entry_hash;
          return claim;
        });
        const good = await verifyReceipts(await Promise.all(claims.map(sign)), keys);
        expect(good).toMatchObject({ ok: true, linksChecked: claims.length - 1 });
        // The server signs whatever its database says: an edited entry is re-signed, so the chain must catch it.
        const i = pick % claims.length;
        const edited = claims.map((c) => ({ ...c }));
        edited[i] = { ...edited[i], [field]: field === "seq" ? String(Number(edited[i].seq) + claims.length + 1) : `${edited[i][field]}x` };
        const bad = await verifyReceipts(await Promise.all(edited.map(sign)), keys);
        expect(bad.ok).toBe(false);
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 15), seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined },
    );
  });
});
