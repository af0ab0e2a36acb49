/**
 * Binding web3 wallets to accounts. A signed-in user asks for a challenge
 * (a single-use nonce inside a Sign-In-With-Ethereum message, or a plain
 * message for Solana), the wallet signs it, and the binding records the user
 * and their role: the wallet's own tokens then act as that user, never above.
 */
import { randomBytes } from "node:crypto";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import { parseRole, roleName } from "../auth/principal.js";
import type { CheckedProject, ChildRef } from "../auth/tenancy.js";
import type { Clock } from "../clock.js";
import type { Database } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied, unauthenticated } from "../errors.js";
import { newId } from "../ids.js";
import { CaipError, type WalletAccount, checksumAddress, parseAccountId } from "./caip.js";
import { fromBase58, fromHex, recoverEthSigner, verifyEd25519 } from "./signatures.js";
import type { WalletBindingTable } from "./wallet-tables.js";
import type { Selectable } from "kysely";
import type { KeyInvalidation } from "../cluster/key-invalidation.js";
import { accountName, bindingName } from "../names/names.js";

export type BindingRow = Selectable<WalletBindingTable>;

/** Who binds: a signed-in user (or a wallet acting as one: `userId` is then the binder behind it). */
export interface BindingCaller {
  projectId: string;
  role: Role;
  /** The user the binding will act as. */
  userId: string;
}

export interface WalletBindingsDeps {
  database: Database;
  clock: Clock;
  /** The authority named in Sign-In-With-Ethereum messages. */
  domain: string;
  /** How long this process trusts a resolved binding; default 1 s. Own deletions apply at once. */
  cacheMs?: number;
  /** Tells other instances to drop a removed binding at once (Redis pub/sub). */
  invalidation?: KeyInvalidation;
}

export const CHALLENGE_TTL_MS = 5 * 60_000;
export { bindingName };

function parse(accountId: string): WalletAccount {
  try {
    return parseAccountId(accountId);
  } catch (err) {
    throw invalidArgument("account_id", err instanceof CaipError ? err.message : "is not a CAIP-10 account id");
  }
}

/** The text a wallet signs to bind itself; SIWE (EIP-4361) for eip155. */
export function challengeMessage(o: { domain: string; account: WalletAccount; projectId: string; nonce: string; issuedAt: number; expiresAt: number }): string {
  const statement = `Bind this wallet to the Formstate account ${accountName(o.projectId)}.`;
  const times = `Nonce: ${o.nonce}\nIssued At: ${new Date(o.issuedAt).toISOString()}\nExpiration Time: ${new Date(o.expiresAt).toISOString()}`;
  if (o.account.namespace === "eip155") {
    return `${o.domain} wants you to sign in with your Ethereum account:\n${checksumAddress(o.account.address)}\n\n${statement}\n\nURI: https://${o.domain}/accounts/${o.projectId}\nVersion: 1\nChain ID: ${o.account.reference}\n${times}`;
  }
  return `${o.domain} wants you to sign in with your Solana account:\n${o.account.address}\n\n${statement}\n\nChain ID: ${o.account.chainId}\n${times}`;
}

export class WalletBindings {
  private readonly cache = new Map<string, { row: BindingRow | undefined; at: number }>();
  private readonly cacheMs: number;

  constructor(private readonly deps: WalletBindingsDeps) {
    this.cacheMs = deps.cacheMs ?? 1_000;
  }

  async challenge(caller: BindingCaller, projectId: CheckedProject, accountId: string) {
    const account = parse(accountId);
    const now = this.deps.clock.now();
    const nonce = randomBytes(16).toString("hex");
    const expiresAt = now + CHALLENGE_TTL_MS;
    const message = challengeMessage({ domain: this.deps.domain, account, projectId, nonce, issuedAt: now, expiresAt });
    const db = this.deps.database.db;
    await db.deleteFrom("wallet_challenge").where("expire_time", "<", now - CHALLENGE_TTL_MS).execute();
    await db
      .insertInto("wallet_challenge")
      .values({ nonce, project_id: projectId, account_id: account.accountId, user_id: caller.userId, message, expire_time: expiresAt, use_time: null, create_time: now })
      .execute();
    return { nonce, message, expiresAt };
  }

  /** Verifies the signature over the nonce's message and binds; the nonce is spent only by a valid signature. */
  async bind(caller: BindingCaller, projectId: CheckedProject, accountId: string, nonce: string, signature: string): Promise<BindingRow> {
    const account = parse(accountId);
    const now = this.deps.clock.now();
    return this.deps.database.transaction(async (tx) => {
      const ch = await tx.selectFrom("wallet_challenge").selectAll().where("nonce", "=", nonce).executeTakeFirst();
      // A nonce issued to someone else, elsewhere or for another wallet is as unknown as a made-up one.
      if (!ch || ch.project_id !== projectId || ch.user_id !== caller.userId || ch.account_id !== account.accountId) {
        throw failedPrecondition("unknown nonce for this wallet and account: ask CreateWalletChallenge for one", "NONCE_UNKNOWN");
      }
      if (ch.use_time !== null) throw failedPrecondition("this nonce was already used: ask for a new challenge", "NONCE_USED");
      if (ch.expire_time <= now) throw failedPrecondition("this challenge expired: ask for a new one", "NONCE_EXPIRED");
      const message = new TextEncoder().encode(ch.message);
      if (account.namespace === "eip155") {
        const sig = fromHex(signature);
        if (!sig || sig.length !== 65) throw invalidArgument("signature", "must be a 65-byte personal_sign signature in 0x hex");
        if (recoverEthSigner(message, sig) !== account.address) throw unauthenticated("the signature is not this wallet's over the challenge message", "WALLET_SIGNATURE_INVALID");
      } else {
        const sig = fromBase58(signature);
        if (!sig || sig.length !== 64) throw invalidArgument("signature", "must be a 64-byte Ed25519 signature in base58");
        if (!verifyEd25519(message, sig, account.publicKey)) throw unauthenticated("the signature is not this wallet's over the challenge message", "WALLET_SIGNATURE_INVALID");
      }
      const spent = await tx.updateTable("wallet_challenge").set({ use_time: now }).where("nonce", "=", nonce).where("use_time", "is", null).executeTakeFirst();
      if (Number(spent.numUpdatedRows) !== 1) throw failedPrecondition("this nonce was already used: ask for a new challenge", "NONCE_USED");
      const existing = await tx.selectFrom("wallet_binding").select("project_id").where("account_id", "=", account.accountId).executeTakeFirst();
      if (existing) throw alreadyExists(`a binding of wallet ${account.accountId}`);
      const row: BindingRow = { binding_id: newId(), project_id: projectId, account_id: account.accountId, chain_id: account.chainId, user_id: caller.userId, role: roleName(caller.role), create_time: now };
      await tx.insertInto("wallet_binding").values(row).execute();
      this.cache.delete(account.accountId);
      return row;
    });
  }

  async list(_caller: BindingCaller, projectId: CheckedProject, size: number, token: string) {
    const limit = pageSize(size);
    const cursor = decodePageToken(token, ["number", "string"]);
    let q = this.deps.database.db.selectFrom("wallet_binding").selectAll().where("project_id", "=", projectId);
    if (cursor) {
      const [t, id] = cursor as [number, string];
      q = q.where((eb) => eb.or([eb("create_time", ">", t), eb.and([eb("create_time", "=", t), eb("binding_id", ">", id)])]));
    }
    const rows = await q.orderBy("create_time").orderBy("binding_id").limit(limit + 1).execute();
    return pageOf(rows, limit, (r) => [r.create_time, r.binding_id]);
  }

  /** Users remove their own bindings, admins any; the wallet's tokens fail from the next call. */
  async remove(caller: BindingCaller, { project: projectId, id }: ChildRef): Promise<void> {
    const name = bindingName(projectId, id);
    const db = this.deps.database.db;
    const row = await db.selectFrom("wallet_binding").selectAll().where("project_id", "=", projectId).where("binding_id", "=", id).executeTakeFirst();
    if (!row) throw notFound(`wallet binding "${name}"`);
    if (row.user_id !== caller.userId && caller.role < Role.ADMIN) throw permissionDenied("only admins remove other users' wallet bindings", "ROLE_TOO_LOW");
    await db.deleteFrom("wallet_binding").where("binding_id", "=", id).execute();
    this.cache.delete(row.account_id);
    await this.deps.invalidation?.publish([`w:${row.account_id}`]);
  }

  /** Another instance removed bindings (`w:` account ids; undefined: everything). */
  drop(ids: string[] | undefined): void {
    if (ids === undefined) this.cache.clear();
    else for (const id of ids) if (id.startsWith("w:")) this.cache.delete(id.slice(2));
  }

  /** The binding of a normalized CAIP-10 account id, if any. */
  async resolve(accountId: string): Promise<BindingRow | undefined> {
    const now = this.deps.clock.now();
    const hit = this.cache.get(accountId);
    if (hit && now - hit.at < this.cacheMs) return hit.row;
    const row = await this.deps.database.db.selectFrom("wallet_binding").selectAll().where("account_id", "=", accountId).executeTakeFirst();
    if (this.cache.size >= 50_000) this.cache.clear();
    this.cache.set(accountId, { row, at: now });
    return row;
  }
}

/** The role a binding grants: the binder's at binding time, lowered if their membership now says less. */
export function bindingRole(row: BindingRow, memberRole: string | undefined): Role {
  const bound = parseRole(row.role) ?? Role.USER;
  const member = parseRole(memberRole);
  return member !== undefined && member < bound ? member : bound;
}
