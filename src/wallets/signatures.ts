/**
 * Wallet signatures, verified with audited libraries (@noble/curves):
 * Ethereum's `personal_sign` (EIP-191, secp256k1 with public-key recovery)
 * and Solana's Ed25519 message signatures.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { base58 } from "@scure/base";

const utf8 = new TextEncoder();

/** keccak256("\x19Ethereum Signed Message:\n" + len + message): what `personal_sign` signs. */
export function eip191Hash(message: Uint8Array): Uint8Array {
  const prefix = utf8.encode(`\x19Ethereum Signed Message:\n${message.length}`);
  const data = new Uint8Array(prefix.length + message.length);
  data.set(prefix);
  data.set(message, prefix.length);
  return keccak_256(data);
}

/** The lowercase 0x address of an uncompressed or compressed secp256k1 public key. */
export function ethAddressOf(publicKey: Uint8Array): string {
  const uncompressed = secp256k1.Point.fromBytes(publicKey).toBytes(false);
  return `0x${Buffer.from(keccak_256(uncompressed.slice(1)).slice(-20)).toString("hex")}`;
}

/**
 * The address that produced a 65-byte r‖s‖v signature (v = 27/28 or 0/1) over
 * `message` with `personal_sign`, or undefined when the signature is malformed.
 */
export function recoverEthSigner(message: Uint8Array, signature: Uint8Array): string | undefined {
  if (signature.length !== 65) return undefined;
  const v = signature[64] >= 27 ? signature[64] - 27 : signature[64];
  if (v !== 0 && v !== 1) return undefined;
  // noble's "recovered" format puts the recovery bit first.
  const recovered = new Uint8Array(65);
  recovered[0] = v;
  recovered.set(signature.subarray(0, 64), 1);
  try {
    return ethAddressOf(secp256k1.recoverPublicKey(recovered, eip191Hash(message), { prehash: false }));
  } catch {
    return undefined;
  }
}

/** Whether a 64-byte Ed25519 signature over `message` is the key's. */
export function verifyEd25519(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return ed25519.verify(signature, message, publicKey);
  } catch {
    return false;
  }
}

/** Decodes 0x-hex, or undefined. */
export function fromHex(s: string): Uint8Array | undefined {
  if (!/^0x([0-9a-fA-F]{2})*$/.test(s)) return undefined;
  return Uint8Array.from(Buffer.from(s.slice(2), "hex"));
}

/** Decodes base58, or undefined. */
export function fromBase58(s: string): Uint8Array | undefined {
  try {
    return base58.decode(s);
  } catch {
    return undefined;
  }
}
