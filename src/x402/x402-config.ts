/**
 * The x402 funding rail's settings (issue 18). The rail is off unless a
 * facilitator and a pay-to address are configured; with either set, the
 * network (CAIP-2) and the asset are required too, so a half-configured
 * rail stops start-up instead of taking payments it cannot settle.
 */
import { envReader } from "../config-env.js";

/** x402 top-ups: who settles, where the money goes, in which asset. */
export interface X402Config {
  /** The facilitator's base URL; its `/verify` and `/settle` are called over HTTP. */
  facilitatorUrl: string;
  /** The address payments go to (on `network`). */
  payTo: string;
  /** CAIP-2 chain id, for example `eip155:8453`. */
  network: string;
  /** The asset's address (for example USDC's contract). */
  asset: string;
  /** The asset's decimals (6 for USDC); at least 6, so one micro-USD is a whole number of atomic units. */
  assetDecimals: number;
  /** EIP-712 domain of the asset, sent as `extra` for EIP-3009 tokens. */
  assetName: string;
  assetVersion: string;
  /** How long a payment authorization may stay valid. */
  maxTimeoutSeconds: number;
  /** Bounds of one top-up, micro-USD. */
  minTopUpMicros: number;
  maxTopUpMicros: number;
  /** Timeout of one facilitator request, ms. */
  facilitatorTimeoutMs: number;
  /** The server's public origin for the resource URLs it offers; unset = the origin the caller used. */
  publicUrl?: string;
}

const CAIP2 = /^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}$/;

/** Reads the x402 settings; pushes a line per bad variable into `problems`. Undefined when the rail is off. */
export function readX402Config(env: NodeJS.ProcessEnv, problems: string[]): X402Config | undefined {
  const { str, int } = envReader(env, problems);
  const facilitatorUrl = str("FORMSTATE_X402_FACILITATOR_URL");
  const payTo = str("FORMSTATE_X402_PAY_TO");
  const publicUrl = str("FORMSTATE_PUBLIC_URL");
  if (publicUrl !== undefined && !isHttpUrl(publicUrl)) problems.push("FORMSTATE_PUBLIC_URL must be an http or https URL");
  if (!facilitatorUrl && !payTo) return undefined;
  const before = problems.length;
  if (!facilitatorUrl || !payTo) problems.push("FORMSTATE_X402_FACILITATOR_URL and FORMSTATE_X402_PAY_TO must be set together");
  if (facilitatorUrl && !isHttpUrl(facilitatorUrl)) problems.push("FORMSTATE_X402_FACILITATOR_URL must be an http or https URL");
  const network = str("FORMSTATE_X402_NETWORK");
  if (!network) problems.push("FORMSTATE_X402_NETWORK (a CAIP-2 chain id such as eip155:8453) is required with the x402 rail");
  else if (!CAIP2.test(network)) problems.push(`FORMSTATE_X402_NETWORK=${JSON.stringify(network)} must be a CAIP-2 chain id such as eip155:8453`);
  const asset = str("FORMSTATE_X402_ASSET");
  if (!asset) problems.push("FORMSTATE_X402_ASSET (the asset's address) is required with the x402 rail");
  const config: X402Config = {
    facilitatorUrl: (facilitatorUrl ?? "").replace(/\/+$/, ""),
    payTo: payTo ?? "",
    network: network ?? "",
    asset: asset ?? "",
    assetDecimals: int("FORMSTATE_X402_ASSET_DECIMALS", 6, 6, 36),
    assetName: str("FORMSTATE_X402_ASSET_NAME") ?? "USD Coin",
    assetVersion: str("FORMSTATE_X402_ASSET_VERSION") ?? "2",
    maxTimeoutSeconds: int("FORMSTATE_X402_MAX_TIMEOUT_SECONDS", 300, 10, 86_400),
    minTopUpMicros: int("FORMSTATE_X402_MIN_TOPUP_MICROS", 10_000, 1, 1e15),
    maxTopUpMicros: int("FORMSTATE_X402_MAX_TOPUP_MICROS", 1_000_000_000, 1, 1e15),
    facilitatorTimeoutMs: int("FORMSTATE_X402_FACILITATOR_TIMEOUT_MS", 15_000, 100, 120_000),
    publicUrl: publicUrl?.replace(/\/+$/, ""),
  };
  if (config.minTopUpMicros > config.maxTopUpMicros) problems.push("FORMSTATE_X402_MIN_TOPUP_MICROS must not exceed FORMSTATE_X402_MAX_TOPUP_MICROS");
  return problems.length > before ? undefined : config;
}

function isHttpUrl(raw: string): boolean {
  try {
    const u = new URL(raw);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}
