/**
 * CAIP-2 chain ids and CAIP-10 account ids for the two wallet families we
 * verify: `eip155:<chainId>:<0x address>` and `solana:<genesis>:<base58 key>`.
 * Parsing normalizes (eip155 addresses to lowercase) so one wallet has one id.
 */
import { keccak_256 } from "@noble/hashes/sha3.js";
import { base58 } from "@scure/base";

export type WalletAccount =
  | { namespace: "eip155"; chainId: string; reference: string; address: string; accountId: string }
  | { namespace: "solana"; chainId: string; reference: string; publicKey: Uint8Array; address: string; accountId: string };

/** Why an account id was refused, for the caller's message. */
export class CaipError extends Error {}

const EIP155 = /^eip155:([1-9][0-9]{0,31}):(0x[0-9a-fA-F]{40})$/;
// CAIP-2 references are 1-32 characters; Solana's is the genesis hash, truncated to 32 base58 characters.
const SOLANA = /^solana:([1-9A-HJ-NP-Za-km-z]{1,32}):([1-9A-HJ-NP-Za-km-z]{32,44})$/;

/** Parses a CAIP-10 account id; throws CaipError saying what is wrong. */
export function parseAccountId(id: string): WalletAccount {
  let m = EIP155.exec(id);
  if (m) {
    const address = m[2];
    if (address !== address.toLowerCase() && address.slice(2) !== address.slice(2).toUpperCase() && checksumAddress(address) !== address) {
      throw new CaipError(`${address} fails its EIP-55 checksum`);
    }
    const lower = address.toLowerCase();
    return { namespace: "eip155", chainId: `eip155:${m[1]}`, reference: m[1], address: lower, accountId: `eip155:${m[1]}:${lower}` };
  }
  m = SOLANA.exec(id);
  if (m) {
    let publicKey: Uint8Array;
    try {
      publicKey = base58.decode(m[2]);
    } catch {
      throw new CaipError("the solana address is not base58");
    }
    if (publicKey.length !== 32) throw new CaipError("a solana address is a 32-byte Ed25519 public key");
    return { namespace: "solana", chainId: `solana:${m[1]}`, reference: m[1], publicKey, address: m[2], accountId: id };
  }
  if (id.startsWith("eip155:")) throw new CaipError("an eip155 account id is eip155:<decimal chain id>:<0x and 40 hex digits>");
  if (id.startsWith("solana:")) throw new CaipError("a solana account id is solana:<genesis hash, 32 base58 chars>:<base58 public key>");
  throw new CaipError("must be a CAIP-10 account id in the eip155 or solana namespace");
}

/** Whether a string looks like a CAIP-10 id of a namespace we verify (cheap: no decoding). */
export function looksLikeAccountId(s: string): boolean {
  return s.startsWith("eip155:") || s.startsWith("solana:");
}

/** The EIP-55 mixed-case form of an address. */
export function checksumAddress(address: string): string {
  const hex = address.slice(2).toLowerCase();
  const hash = keccak_256(new TextEncoder().encode(hex));
  let out = "0x";
  for (let i = 0; i < 40; i++) {
    const nibble = (hash[i >> 1] >> (i % 2 === 0 ? 4 : 0)) & 0xf;
    out += nibble >= 8 ? hex[i].toUpperCase() : hex[i];
  }
  return out;
}
