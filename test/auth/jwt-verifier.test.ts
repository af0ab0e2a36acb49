/**
 * The JWT verifier against a JWKS served over real HTTP: the key set is
 * cached, refetched on an unknown kid only after the cool-down, and verified
 * tokens are cached without outliving their exp.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { type JWK, SignJWT, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError } from "../../src/auth/auth-error.js";
import { createJwtVerifier } from "../../src/auth/jwt-verifier.js";

let server: http.Server;
let url: string;
let fetches = 0;
let keys: JWK[] = [];

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    fetches++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
});
afterAll(() => server?.close());

async function keyPair(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256" } as JWK, kid };
}
const sign = (k: { privateKey: CryptoKey; kid: string }, exp: number, now = Date.now()) =>
  new SignJWT({ project_id: "p" }).setProtectedHeader({ alg: "ES256", kid: k.kid }).setSubject("s").setIssuedAt(Math.floor(now / 1000)).setExpirationTime(exp).sign(k.privateKey);

async function reason(p: Promise<unknown>) {
  try {
    await p;
    return "accepted";
  } catch (e) {
    return e instanceof AuthError ? e.reason : String(e);
  }
}

describe("createJwtVerifier", () => {
  it("refetches the JWKS for an unknown kid only after the cool-down, and picks up a rotated key", async () => {
    const k1 = await keyPair("k1");
    keys = [k1.jwk];
    fetches = 0;
    const v = createJwtVerifier({ jwksUrl: url, algorithms: ["ES256"], cooldownMs: 300 });
    const exp = Math.floor(Date.now() / 1000) + 600;
    expect(await reason(v.verify(await sign(k1, exp)))).toBe("accepted");
    expect(fetches).toBe(1);

    // The IdP rotates in k2; a k2 token inside the cool-down fails without a refetch.
    const k2 = await keyPair("k2");
    keys = [k1.jwk, k2.jwk];
    const t2 = await sign(k2, exp);
    expect(await reason(v.verify(t2))).toBe("TOKEN_UNKNOWN_KID");
    expect(fetches).toBe(1);
    // After the cool-down, an unknown kid refetches once and the rotated key verifies.
    await new Promise((r) => setTimeout(r, 350));
    expect(await reason(v.verify(t2))).toBe("accepted");
    expect(fetches).toBe(2);
  });

  it("serves a repeated token from its cache, but never past exp", async () => {
    const k = await keyPair("k3");
    keys = [k.jwk];
    fetches = 0;
    let now = Date.now();
    const v = createJwtVerifier({ jwksUrl: url, algorithms: ["ES256"], clockToleranceSec: 0, now: () => now });
    const token = await sign(k, Math.floor(now / 1000) + 60, now);
    for (let i = 0; i < 1000; i++) await v.verify(token);
    expect(fetches).toBe(1);
    // The key server goes away: the cached token still verifies...
    keys = [];
    expect(await reason(v.verify(token))).toBe("accepted");
    // ...until its exp passes.
    now += 61_000;
    expect(await reason(v.verify(token))).toBe("TOKEN_EXPIRED");
  });

  it("refuses HMAC or none in the algorithm allowlist at construction", () => {
    expect(() => createJwtVerifier({ jwksUrl: url, algorithms: ["HS256"] })).toThrow(/not allowed/);
    expect(() => createJwtVerifier({ jwksUrl: url, algorithms: ["none"] })).toThrow(/not allowed/);
  });
});
