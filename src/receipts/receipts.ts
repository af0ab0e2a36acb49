/**
 * Signed receipts of ledger entries. A receipt is a JWS (signed with the
 * server's receipt key) of one entry and its place in the account's hash
 * chain, so a customer can check a statement offline: each receipt is
 * genuine (the signature, against the published keys) and the entries
 * follow one another without a gap, an insertion or an edit (the chain).
 *
 * The chain is stored in `ledger_entry_hash` and extended in seq order when
 * a receipt is asked for (not on the metering hot path): entries are
 * append-only and their seq is dense per account, so the chain is the same
 * whenever it is computed, and once a receipt is out, a later change of an
 * earlier entry can no longer match it.
 */
import { SignJWT } from "jose";
import type { CheckedProject } from "../auth/tenancy.js";
import { creditTransactionName } from "../names/names.js";
import type { Environment } from "../ledger/ledger.js";
import type { SigningKey } from "../auth/dev-issuer.js";
import type { Clock } from "../clock.js";
import type { Database } from "../db/database.js";
import { notFound } from "../errors.js";
import type { LedgerRow } from "../ledger/ledger.js";
import { GENESIS_HASH, RECEIPT_ISSUER, RECEIPT_TYP, type ReceiptClaim, entryHash, entryOf } from "./receipt-chain.js";

const BATCH = 500;

export interface ReceiptsDeps {
  database: Database;
  clock: Clock;
  key: SigningKey;
}

export interface Receipt {
  jws: string;
  claim: ReceiptClaim;
}

export class Receipts {
  constructor(private readonly deps: ReceiptsDeps) {}

  /** The public keys receipts are verified with (served at /.well-known/receipt-keys.json). */
  jwks(): { keys: Array<Record<string, unknown>> } {
    return { keys: [{ ...this.deps.key.publicJwk }] };
  }

  /** The signed receipt of a project's ledger entry `id` (either ledger: live or sandbox, or only `environment`'s). */
  async receipt(projectId: CheckedProject, id: string, environment?: Environment): Promise<Receipt> {
    const row = await this.deps.database.db.selectFrom("credit_transaction").selectAll().where("project_id", "=", projectId).where("tx_id", "=", id).executeTakeFirst();
    if (!row || (environment && row.environment !== environment)) throw notFound(`credit transaction "${creditTransactionName(projectId, id)}"`);
    const { previous, hash } = await this.chainThrough(projectId, row.environment as Environment, Number(row.seq));
    const claim: ReceiptClaim = { ...entryOf(row), previous_entry_hash: previous, entry_hash: hash };
    const { key } = this.deps;
    const jws = await new SignJWT({ receipt: claim })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: RECEIPT_TYP })
      .setIssuer(RECEIPT_ISSUER)
      .setSubject(claim.account)
      .setJti(claim.transaction)
      .setIssuedAt(Math.floor(this.deps.clock.now() / 1000))
      .sign(key.key);
    return { jws, claim };
  }

  /** The hashes of entry `seq` and of the one before it, extending the stored chain as far as `seq`. */
  async chainThrough(projectId: string, environment: Environment, seq: number): Promise<{ previous: string; hash: string }> {
    const db = this.deps.database.db;
    const stored = await db.selectFrom("ledger_entry_hash").select(["seq", "entry_hash"]).where("project_id", "=", projectId).where("environment", "=", environment).where("seq", "<=", seq).where("seq", ">=", seq - 1).execute();
    const at = (s: number) => stored.find((r) => Number(r.seq) === s)?.entry_hash;
    if (at(seq)) return { previous: seq === 1 ? GENESIS_HASH : at(seq - 1)!, hash: at(seq)! };
    const top = await db.selectFrom("ledger_entry_hash").select(["seq", "entry_hash"]).where("project_id", "=", projectId).where("environment", "=", environment).orderBy("seq", "desc").limit(1).executeTakeFirst();
    let lastSeq = top ? Number(top.seq) : 0;
    let lastHash = top?.entry_hash ?? GENESIS_HASH;
    let previous = lastHash;
    while (lastSeq < seq) {
      const rows: LedgerRow[] = await db
        .selectFrom("credit_transaction")
        .selectAll()
        .where("project_id", "=", projectId)
        .where("environment", "=", environment)
        .where("seq", ">", lastSeq)
        .where("seq", "<=", seq)
        .orderBy("seq")
        .limit(BATCH)
        .execute();
      if (rows.length === 0 || Number(rows[0].seq) !== lastSeq + 1) throw new Error(`ledger of ${projectId} has a gap after seq ${lastSeq}`);
      const links: Array<{ project_id: string; environment: string; seq: number; entry_hash: string }> = [];
      for (const r of rows) {
        if (Number(r.seq) !== lastSeq + 1) throw new Error(`ledger of ${projectId} has a gap after seq ${lastSeq}`);
        previous = lastHash;
        lastHash = entryHash(lastHash, entryOf(r));
        lastSeq = Number(r.seq);
        links.push({ project_id: projectId, environment, seq: lastSeq, entry_hash: lastHash });
      }
      // Deterministic values: a concurrent request computing the same links inserts the same rows.
      await this.deps.database.transaction((tx) => tx.insertInto("ledger_entry_hash").values(links).onConflict((oc) => oc.columns(["project_id", "environment", "seq"]).doNothing()).execute(), { scope: projectId });
    }
    return { previous, hash: lastHash };
  }
}
