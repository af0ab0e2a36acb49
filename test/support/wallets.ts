/**
 * Real wallet key pairs for tests: an Ethereum account (secp256k1, signing
 * like `personal_sign`) and a Solana account (Ed25519), each able to sign
 * challenge messages and its own wallet tokens.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { base58 } from "@scure/base";
import { checksumAddress } from "../../src/wallets/caip.js";
import { eip191Hash, ethAddressOf } from "../../src/wallets/signatures.js";

export const SOLANA_MAINNET = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";

export interface TestWallet {
  namespace: "eip155" | "solana";
  accountId: string;
  chainId: string;
  alg: string;
  /** Signs bytes the way the wallet family does. */
  signBytes(data: Uint8Array): Uint8Array;
  /** A challenge signature in the wire format BindWallet takes. */
  signMessage(message: string): string;
}

export function ethWallet(chainId = 1): TestWallet {
  const sk = secp256k1.utils.randomSecretKey();
  const address = ethAddressOf(secp256k1.getPublicKey(sk, false));
  const signBytes = (data: Uint8Array) => {
    const rec = secp256k1.sign(eip191Hash(data), sk, { prehash: false, format: "recovered" });
    const out = new Uint8Array(65);
    out.set(rec.subarray(1), 0);
    out[64] = 27 + rec[0];
    return out;
  };
  return {
    namespace: "eip155",
    // Mixed-case (EIP-55) on purpose: the server normalizes.
    accountId: `eip155:${chainId}:${checksumAddress(address)}`,
    chainId: `eip155:${chainId}`,
    alg: "EIP191",
    signBytes,
    signMessage: (m) => `0x${Buffer.from(signBytes(new TextEncoder().encode(m))).toString("hex")}`,
  };
}

export function solanaWallet(chain = SOLANA_MAINNET): TestWallet {
  const sk = ed25519.utils.randomSecretKey();
  const address = base58.encode(ed25519.getPublicKey(sk));
  const signBytes = (data: Uint8Array) => ed25519.sign(data, sk);
  return {
    namespace: "solana",
    accountId: `${chain}:${address}`,
    chainId: chain,
    alg: "EdDSA",
    signBytes,
    signMessage: (m) => base58.encode(signBytes(new TextEncoder().encode(m))),
  };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** A wallet token: `claims` merged over iss/chain; `signer` signs (default: the wallet itself). */
export function walletToken(wallet: TestWallet, claims: Record<string, unknown>, opts: { signer?: TestWallet; header?: Record<string, unknown> } = {}): string {
  const header = b64({ alg: wallet.alg, typ: "JWT", ...opts.header });
  const payload = b64({ iss: wallet.accountId, chain: wallet.chainId, ...claims });
  const input = `${header}.${payload}`;
  const sig = (opts.signer ?? wallet).signBytes(new TextEncoder().encode(input));
  return `${input}.${Buffer.from(sig).toString("base64url")}`;
}

/** Replaces the payload of a signed token with other claims, keeping the signature (tampering). */
export function tamper(token: string, change: (claims: Record<string, unknown>) => void): string {
  const [h, p, s] = token.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>;
  change(claims);
  return `${h}.${b64(claims)}.${s}`;
}
