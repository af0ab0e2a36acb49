/** The x402 rail's pure parts: its configuration (off, complete, or refused at start-up), amounts, header codec, payload hashing. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { canonicalHash } from "../../src/x402/x402-topups.js";
import { atomicToMicros, decodeHeader, encodeHeader, microsToAtomic, paymentPayloadProblem } from "../../src/x402/x402-wire.js";

const rail = { FORMSTATE_X402_FACILITATOR_URL: "https://x402.org/facilitator", FORMSTATE_X402_PAY_TO: "0xabc", FORMSTATE_X402_NETWORK: "eip155:8453", FORMSTATE_X402_ASSET: "0xusdc" };

describe("x402 configuration", () => {
  it("is off unless a facilitator and pay-to address are set", () => {
    expect(loadConfig({}).x402).toBeUndefined();
    expect(loadConfig(rail).x402).toMatchObject({ facilitatorUrl: "https://x402.org/facilitator", payTo: "0xabc", network: "eip155:8453", asset: "0xusdc", assetDecimals: 6, maxTimeoutSeconds: 300 });
  });

  it("a half-configured rail stops start-up, naming every missing or bad variable", () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (err) {
        return (err as ConfigError).problems.join("\n");
      }
      return "";
    };
    expect(problems({ FORMSTATE_X402_PAY_TO: "0xabc" })).toMatch(/must be set together[\s\S]*NETWORK[\s\S]*ASSET/);
    expect(problems({ ...rail, FORMSTATE_X402_NETWORK: "base" })).toMatch(/CAIP-2/);
    expect(problems({ ...rail, FORMSTATE_X402_FACILITATOR_URL: "ftp://x" })).toMatch(/http or https URL/);
    expect(problems({ ...rail, FORMSTATE_X402_ASSET_DECIMALS: "2" })).toMatch(/ASSET_DECIMALS/);
    expect(problems({ ...rail, FORMSTATE_X402_MIN_TOPUP_MICROS: "10", FORMSTATE_X402_MAX_TOPUP_MICROS: "5" })).toMatch(/must not exceed/);
  });
});

describe("amounts", () => {
  it("micro-USD and atomic units convert exactly, both ways", () => {
    expect(microsToAtomic(1_234_567, 6)).toBe("1234567");
    expect(microsToAtomic(1_234_567, 18)).toBe("1234567000000000000");
    expect(atomicToMicros("1234567000000000000", 18)).toBe(1_234_567);
    expect(atomicToMicros("1234567000000000001", 18)).toBeUndefined();
    expect(atomicToMicros("-1", 6)).toBeUndefined();
    expect(atomicToMicros("9".repeat(30), 6)).toBeUndefined();
  });
});

describe("headers and payloads", () => {
  it("round-trips header objects and refuses what is not base64 JSON of an object", () => {
    expect(decodeHeader(encodeHeader({ a: 1 }))).toEqual({ a: 1 });
    expect(decodeHeader("not base64!")).toBeUndefined();
    expect(decodeHeader(Buffer.from("[1]").toString("base64"))).toBeUndefined();
  });

  it("names what makes a payload not v2", () => {
    const accepted = { scheme: "exact", network: "eip155:1", amount: "1", asset: "0x", payTo: "0x" };
    expect(paymentPayloadProblem({ x402Version: 2, accepted, payload: {} })).toBeUndefined();
    expect(paymentPayloadProblem({ x402Version: 1, accepted, payload: {} })).toMatch(/x402Version/);
    expect(paymentPayloadProblem({ x402Version: 2, accepted: { ...accepted, amount: 1 }, payload: {} })).toMatch(/accepted.amount/);
    expect(paymentPayloadProblem({ x402Version: 2, accepted, payload: [] })).toMatch(/payload/);
  });

  it("one payload has one hash whatever the order of its fields", () => {
    expect(canonicalHash({ a: 1, b: { c: 2, d: [3, { e: 4, f: 5 }] } })).toBe(canonicalHash({ b: { d: [3, { f: 5, e: 4 }], c: 2 }, a: 1 }));
    expect(canonicalHash({ a: 1 })).not.toBe(canonicalHash({ a: 2 }));
  });
});
