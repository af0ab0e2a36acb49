/**
 * The JWT verifier against a JWKS served over real HTTP (node:http on a
 * loopback port, fetches counted): every refusal is asserted by reason and by
 * the exact message a client would see; the key set is refetched on an
 * unknown kid only after the cool-down; verified tokens are cached without
 * outliving their exp.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { type JWK, type JWTPayload, SignJWT, exportJWK, exportSPKI, generateKeyPair } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { AuthError } from "../../src/auth/auth-error.js";
import { type JwtVerifierOptions, createJwtVerifier } from "../../src/auth/jwt-verifier.js";

const ISSUER = "https://idp.example.test/";
const AUDIENCE = "formstate-api";

/** A JWKS endpoint that counts its fetches and can misbehave on demand. */
interface KeyServer {
  url: string;
  keys: JWK[];
  fetches: number;
  mode: "ok" | "hang" | "500" | "not-json";
  close(): Promise<void>;
}

const servers: KeyServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function startKeyServer(keys: JWK[]): Promise<KeyServer> {
  const hung: http.ServerResponse[] = [];
  const ks: KeyServer = {
    url: "",
    keys,
    fetches: 0,
    mode: "ok",
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hung) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((_req, res) => {
    ks.fetches++;
    if (ks.mode === "hang") return void hung.push(res);
    if (ks.mode === "500") return void res.writeHead(500).end("oops");
    if (ks.mode === "not-json") return void res.writeHead(200, { "content-type": "application/json" }).end("<html>");
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: ks.keys }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  ks.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  servers.push(ks);
  return ks;
}

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(kid: string, alg = "ES256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

const sec = (ms: number) => Math.floor(ms / 1000);

/** A token with sensible defaults at clock time `at`; `claims` override or (with undefined) remove them. */
function sign(key: SigningKey, at: number, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) {
  const payload: Record<string, unknown> = {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "user-1",
    project_id: "proj-1",
    role: "developer",
    sid: "session-1",
    iat: sec(at),
    exp: sec(at) + 600,
    ...claims,
  };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return new SignJWT(payload as JWTPayload).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** What verify() did: "accepted" or the AuthError's reason and message. */
async function outcome(p: Promise<unknown>): Promise<string | { reason: string; message: string }> {
  try {
    await p;
    return "accepted";
  } catch (e) {
    if (e instanceof AuthError) return { reason: e.reason, message: e.message };
    throw e;
  }
}

/** A key server holding `key`, a clock, and a verifier wired to both. */
async function setup(opts: Partial<JwtVerifierOptions> = {}, alg = "ES256") {
  const key = await signingKey("key-1", alg);
  const ks = await startKeyServer([key.jwk]);
  const clock = { now: Date.now() };
  const verifier = createJwtVerifier({
    jwksUrl: ks.url,
    issuer: ISSUER,
    audience: AUDIENCE,
    algorithms: ["RS256", "ES256", "EdDSA"],
    now: () => clock.now,
    ...opts,
  });
  return { key, ks, clock, verifier };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("createJwtVerifier: accepted tokens", () => {
  it("accepts a valid token and returns subject, project, role, session and times", async () => {
    const { key, ks, clock, verifier } = await setup();
    const token = await sign(key, clock.now);
    const jwt = await verifier.verify(token);
    expect(jwt).toMatchObject({
      subject: "user-1",
      projectId: "proj-1",
      role: "developer",
      sessionId: "session-1",
      issuedAt: sec(clock.now),
      expiresAt: sec(clock.now) + 600,
    });
    expect(jwt.claims.iss).toBe(ISSUER);
    expect(ks.fetches).toBe(1);
  });

  it("takes the session from jti without sid, and ignores a role it does not know", async () => {
    const { key, clock, verifier } = await setup();
    const jwt = await verifier.verify(await sign(key, clock.now, { sid: undefined, jti: "jti-9", role: "superuser" }));
    expect(jwt.sessionId).toBe("jti-9");
    // Unknown role: undefined, so the members table decides rather than a guess.
    expect(jwt.role).toBeUndefined();
  });

  it("accepts the project claim as a fallback for project_id, and a configured project claim", async () => {
    const { key, clock, verifier } = await setup();
    expect((await verifier.verify(await sign(key, clock.now, { project_id: undefined, project: "proj-fallback" }))).projectId).toBe("proj-fallback");
    const custom = createJwtVerifier({ jwksUrl: (await startKeyServer([key.jwk])).url, algorithms: ["ES256"], projectClaim: "org", roleClaim: "fs_role" });
    const jwt = await custom.verify(await sign(key, Date.now(), { project_id: undefined, org: "org-7", role: undefined, fs_role: "admin" }));
    expect(jwt).toMatchObject({ projectId: "org-7", role: "admin" });
  });

  it("accepts an audience list that contains our audience", async () => {
    const { key, clock, verifier } = await setup();
    expect(await outcome(verifier.verify(await sign(key, clock.now, { aud: ["other", AUDIENCE] })))).toBe("accepted");
  });

  it("verifies ES256 and EdDSA keys from the same set", async () => {
    const es = await signingKey("es-1", "ES256");
    const ed = await signingKey("ed-1", "EdDSA");
    const ks = await startKeyServer([es.jwk, ed.jwk]);
    const v = createJwtVerifier({ jwksUrl: ks.url, issuer: ISSUER, audience: AUDIENCE, algorithms: ["ES256", "EdDSA"] });
    expect(await outcome(v.verify(await sign(es, Date.now())))).toBe("accepted");
    expect(await outcome(v.verify(await sign(ed, Date.now())))).toBe("accepted");
  });
});

describe("createJwtVerifier: time", () => {
  it("rejects an expired token", async () => {
    const { key, clock, verifier } = await setup();
    const token = await sign(key, clock.now - 3600_000); // exp 50 minutes ago
    expect(await outcome(verifier.verify(token))).toEqual({ reason: "TOKEN_EXPIRED", message: "token expired" });
  });

  it("accepts a token expired 10 s ago with the default 30 s tolerance, not with 0 s", async () => {
    const { key, ks, clock, verifier } = await setup();
    const token = await sign(key, clock.now, { exp: sec(clock.now) - 10 });
    expect(await outcome(verifier.verify(token))).toBe("accepted");
    const strict = createJwtVerifier({ jwksUrl: ks.url, algorithms: ["ES256"], clockToleranceSec: 0, now: () => clock.now });
    expect(await outcome(strict.verify(token))).toEqual({ reason: "TOKEN_EXPIRED", message: "token expired" });
  });

  it("rejects a token whose nbf is in the future beyond the tolerance, and accepts one within it", async () => {
    const { key, clock, verifier } = await setup();
    const early = await sign(key, clock.now, { nbf: sec(clock.now) + 120 });
    expect(await outcome(verifier.verify(early))).toEqual({ reason: "TOKEN_NOT_YET_VALID", message: "token not yet valid" });
    // Skew of 10 s between the IdP's clock and ours is tolerated.
    expect(await outcome(verifier.verify(await sign(key, clock.now, { nbf: sec(clock.now) + 10 })))).toBe("accepted");
    // The same token becomes valid once our clock reaches nbf.
    clock.now += 120_000;
    expect(await outcome(verifier.verify(early))).toBe("accepted");
  });
});

describe("createJwtVerifier: issuer and audience", () => {
  it("rejects a wrong issuer, and a token with no issuer", async () => {
    const { key, clock, verifier } = await setup();
    expect(await outcome(verifier.verify(await sign(key, clock.now, { iss: "https://evil.example/" })))).toEqual({
      reason: "TOKEN_WRONG_ISSUER",
      message: "token issuer is not accepted",
    });
    expect(await outcome(verifier.verify(await sign(key, clock.now, { iss: undefined })))).toEqual({
      reason: "TOKEN_CLAIM_MISSING",
      message: "token has no iss claim",
    });
  });

  it("rejects a wrong audience", async () => {
    const { key, clock, verifier } = await setup();
    expect(await outcome(verifier.verify(await sign(key, clock.now, { aud: "some-other-api" })))).toEqual({
      reason: "TOKEN_WRONG_AUDIENCE",
      message: "token audience is not accepted",
    });
  });
});

describe("createJwtVerifier: signatures and algorithms", () => {
  it("rejects a token signed by another key that claims the same kid", async () => {
    const { clock, verifier } = await setup();
    const impostor = await signingKey("key-1");
    expect(await outcome(verifier.verify(await sign(impostor, clock.now)))).toEqual({
      reason: "TOKEN_BAD_SIGNATURE",
      message: "token signature is invalid",
    });
  });

  it("rejects a genuine token whose payload was edited", async () => {
    const { key, clock, verifier } = await setup();
    const [h, , s] = (await sign(key, clock.now, { role: "user" })).split(".");
    const forged = `${h}.${b64({ iss: ISSUER, aud: AUDIENCE, sub: "user-1", project_id: "proj-1", role: "admin", exp: sec(clock.now) + 600 })}.${s}`;
    expect(await outcome(verifier.verify(forged))).toEqual({ reason: "TOKEN_BAD_SIGNATURE", message: "token signature is invalid" });
  });

  it("rejects an unsigned alg=none token, crafted by hand", async () => {
    const { clock, verifier } = await setup();
    const payload = { iss: ISSUER, aud: AUDIENCE, sub: "user-1", project_id: "proj-1", role: "admin", exp: sec(clock.now) + 600 };
    for (const header of [{ alg: "none" }, { alg: "none", typ: "JWT", kid: "key-1" }]) {
      const token = `${b64(header)}.${b64(payload)}.`;
      expect(await outcome(verifier.verify(token))).toEqual({ reason: "TOKEN_ALG_NOT_ALLOWED", message: "token algorithm none is not allowed" });
    }
  });

  it("rejects HS256 signed with the RSA public key (PEM or JWK bytes) as the HMAC secret", async () => {
    const { key, ks, clock, verifier } = await setup({}, "RS256");
    const pem = await exportSPKI(key.publicKey);
    for (const secret of [pem, JSON.stringify(key.jwk)]) {
      const token = await new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: "user-1", project_id: "proj-1", role: "admin" })
        .setProtectedHeader({ alg: "HS256", kid: "key-1" })
        .setExpirationTime(sec(clock.now) + 600)
        .sign(new TextEncoder().encode(secret));
      expect(await outcome(verifier.verify(token))).toEqual({ reason: "TOKEN_ALG_NOT_ALLOWED", message: "token algorithm HS256 is not allowed" });
    }
    // Refused from the header alone: the key set was never needed.
    expect(ks.fetches).toBe(0);
  });

  it("rejects an algorithm outside the allowlist even when the key would verify it", async () => {
    const { key, ks, clock } = await setup();
    const rsaOnly = createJwtVerifier({ jwksUrl: ks.url, algorithms: ["RS256"], now: () => clock.now });
    expect(await outcome(rsaOnly.verify(await sign(key, clock.now)))).toEqual({ reason: "TOKEN_ALG_NOT_ALLOWED", message: "token algorithm ES256 is not allowed" });
  });

  it("refuses HMAC, none, unknown or no algorithms at construction", () => {
    const jwksUrl = "http://127.0.0.1:9/jwks";
    expect(() => createJwtVerifier({ jwksUrl, algorithms: ["RS256", "HS256"] })).toThrow("JWT algorithm HS256 is not allowed: HMAC cannot be verified against a public key set");
    expect(() => createJwtVerifier({ jwksUrl, algorithms: ["hs512"] })).toThrow(/hs512 is not allowed: HMAC/);
    expect(() => createJwtVerifier({ jwksUrl, algorithms: ["none"] })).toThrow("JWT algorithm none is not allowed: unsigned tokens prove nothing");
    expect(() => createJwtVerifier({ jwksUrl, algorithms: ["RS257"] })).toThrow(/RS257 is not supported/);
    expect(() => createJwtVerifier({ jwksUrl, algorithms: [] })).toThrow("JWT verifier needs at least one algorithm");
    expect(() => createJwtVerifier({ algorithms: ["RS256"] })).toThrow(/needs a JWKS URL or a key set/);
  });
});

describe("createJwtVerifier: unknown kid and the JWKS cool-down", () => {
  it("refetches once for an unknown kid, not again within the cool-down, and picks up a rotated key after it", async () => {
    const { key, ks, clock, verifier } = await setup({ cooldownMs: 300 });
    const rotated = await signingKey("rotated-1");
    const other = await signingKey("rotated-2");
    const [t0, t1, t2] = await Promise.all([sign(key, clock.now), sign(rotated, clock.now), sign(other, clock.now)]);
    expect(await outcome(verifier.verify(t0))).toBe("accepted");
    expect(ks.fetches).toBe(1);

    // jose's cool-down runs from the last successful fetch: wait it out, then an unknown kid refetches once.
    await sleep(350);
    expect(await outcome(verifier.verify(t1))).toEqual({ reason: "TOKEN_UNKNOWN_KID", message: "token signing key kid=rotated-1 is unknown" });
    expect(ks.fetches).toBe(2);
    // A second unknown kid straight after: inside the cool-down, no fetch.
    expect(await outcome(verifier.verify(t2))).toEqual({
      reason: "TOKEN_UNKNOWN_KID",
      message: "token signing key kid=rotated-2 is unknown",
    });
    expect(ks.fetches).toBe(2);

    // The IdP publishes the rotated key; after the cool-down the same token verifies.
    ks.keys = [key.jwk, rotated.jwk];
    await sleep(350);
    expect(await outcome(verifier.verify(t1))).toBe("accepted");
    expect(ks.fetches).toBe(3);
  });

  it("does not quote a kid that is not fit to print", async () => {
    const { clock, verifier } = await setup();
    const k = await signingKey(`<script>${"x".repeat(100)}`);
    expect(await outcome(verifier.verify(await sign(k, clock.now)))).toEqual({
      reason: "TOKEN_UNKNOWN_KID",
      message: "token signing key kid=(unprintable) is unknown",
    });
  });
});

describe("createJwtVerifier: required claims and malformed tokens", () => {
  it("rejects a token without exp, and one without sub", async () => {
    const { key, clock, verifier } = await setup();
    expect(await outcome(verifier.verify(await sign(key, clock.now, { exp: undefined })))).toEqual({ reason: "TOKEN_CLAIM_MISSING", message: "token has no exp claim" });
    expect(await outcome(verifier.verify(await sign(key, clock.now, { sub: undefined })))).toEqual({ reason: "TOKEN_CLAIM_MISSING", message: "token has no sub claim" });
  });

  it("rejects a token without a project claim, naming the claim", async () => {
    const { key, clock, verifier } = await setup();
    expect(await outcome(verifier.verify(await sign(key, clock.now, { project_id: undefined })))).toEqual({
      reason: "TOKEN_CLAIM_MISSING",
      message: "token has no project_id (or project) claim naming the project",
    });
    expect(await outcome(verifier.verify(await sign(key, clock.now, { project_id: 42 })))).toEqual({
      reason: "TOKEN_CLAIM_MISSING",
      message: "token has no project_id (or project) claim naming the project",
    });
  });

  it("rejects malformed tokens without echoing them", async () => {
    const { key, clock, verifier } = await setup();
    for (const token of ["abc", "a.b.c", "a.b", "a.b.c.d", `${b64("not json")}.${b64({ sub: "x" })}.sig`]) {
      expect(await outcome(verifier.verify(token)), token).toEqual({ reason: "TOKEN_MALFORMED", message: "token is malformed" });
    }
    expect(await outcome(verifier.verify(`${b64({ typ: "JWT" })}.${b64({ sub: "x" })}.`))).toEqual({
      reason: "TOKEN_MALFORMED",
      message: "token is malformed: its header has no alg",
    });
    expect(await outcome(verifier.verify(await sign(key, clock.now, { exp: "tomorrow" })))).toEqual({
      reason: "TOKEN_MALFORMED",
      message: "token is malformed: its exp claim has the wrong type",
    });
    expect(await outcome(verifier.verify(""))).toEqual({ reason: "TOKEN_MISSING", message: "token is missing" });
  });
});

describe("createJwtVerifier: an unavailable JWKS", () => {
  it("reports JWKS_UNAVAILABLE when the key server refuses connections, answers 500, sends junk or hangs", async () => {
    const key = await signingKey("key-1");
    const token = await sign(key, Date.now());
    const expected = { reason: "JWKS_UNAVAILABLE", message: "the identity provider's signing keys could not be fetched; try again later" };

    const gone = await startKeyServer([key.jwk]);
    await gone.close();
    expect(await outcome(createJwtVerifier({ jwksUrl: gone.url, algorithms: ["ES256"] }).verify(token))).toEqual(expected);

    for (const mode of ["500", "not-json", "hang"] as const) {
      const ks = await startKeyServer([key.jwk]);
      ks.mode = mode;
      const started = Date.now();
      const v = createJwtVerifier({ jwksUrl: ks.url, algorithms: ["ES256"], timeoutMs: 300 });
      expect(await outcome(v.verify(token)), mode).toEqual(expected);
      expect(ks.fetches).toBe(1);
      if (mode === "hang") expect(Date.now() - started).toBeLessThan(3_000);
      // The IdP recovers: the next verification fetches again and succeeds (failures are not cached).
      ks.mode = "ok";
      expect(await outcome(v.verify(token)), mode).toBe("accepted");
    }
  });
});

describe("createJwtVerifier: the verified-token cache", () => {
  it("serves 1,000 verifications of one token from one JWKS fetch and one jose verify, even after the key server stops", async () => {
    const { key, ks, clock, verifier } = await setup({ cooldownMs: 100 });
    const token = await sign(key, clock.now);
    const started = performance.now();
    for (let i = 0; i < 1000; i++) await verifier.verify(token);
    const elapsed = performance.now() - started;
    expect(ks.fetches).toBe(1);
    expect(verifier.cacheStats()).toEqual({ size: 1, hits: 999, misses: 1 });
    // Hashing plus a Map lookup; a signature verification each time would be tens of ms at least.
    expect(elapsed).toBeLessThan(500);

    await ks.close();
    expect(await outcome(verifier.verify(token))).toBe("accepted");
    // A token from a new key needs the key set, which is now out of reach.
    await sleep(150);
    const rotated = await signingKey("rotated-1");
    expect(await outcome(verifier.verify(await sign(rotated, clock.now)))).toEqual({
      reason: "JWKS_UNAVAILABLE",
      message: "the identity provider's signing keys could not be fetched; try again later",
    });
  });

  it("within the cool-down, a new kid after the key server stopped is an unknown kid and the cached token still verifies", async () => {
    const { key, ks, clock, verifier } = await setup();
    const token = await sign(key, clock.now);
    await verifier.verify(token);
    await ks.close();
    expect(await outcome(verifier.verify(token))).toBe("accepted");
    const rotated = await signingKey("rotated-1");
    expect(await outcome(verifier.verify(await sign(rotated, clock.now)))).toEqual({
      reason: "TOKEN_UNKNOWN_KID",
      message: "token signing key kid=rotated-1 is unknown",
    });
    expect(ks.fetches).toBe(1);
  });

  it("rejects a cached token once the clock passes its exp (+ tolerance), without asking jose", async () => {
    const { key, clock, verifier } = await setup({ clockToleranceSec: 30 });
    const token = await sign(key, clock.now, { exp: sec(clock.now) + 60 });
    expect(await outcome(verifier.verify(token))).toBe("accepted");
    clock.now += 60_000 + 25_000; // past exp, within tolerance
    expect(await outcome(verifier.verify(token))).toBe("accepted");
    clock.now += 10_000; // past exp + tolerance
    expect(await outcome(verifier.verify(token))).toEqual({ reason: "TOKEN_EXPIRED", message: "token expired" });
    expect(verifier.cacheStats()).toMatchObject({ hits: 1, misses: 1 });
    // Evicted, so the next attempt goes to jose, which agrees.
    expect(await outcome(verifier.verify(token))).toEqual({ reason: "TOKEN_EXPIRED", message: "token expired" });
    expect(verifier.cacheStats()).toMatchObject({ misses: 2 });
  });

  it("re-verifies a long-lived cached token after 5 minutes", async () => {
    const { key, ks, clock, verifier } = await setup();
    const token = await sign(key, clock.now, { exp: sec(clock.now) + 3600 });
    await verifier.verify(token);
    clock.now += 299_000;
    await verifier.verify(token);
    expect(verifier.cacheStats()).toMatchObject({ hits: 1, misses: 1 });
    clock.now += 2_000;
    await verifier.verify(token);
    expect(verifier.cacheStats()).toMatchObject({ hits: 1, misses: 2 });
    // jose kept the key set (its own cache runs on real time), so no new fetch.
    expect(ks.fetches).toBe(1);
  });

  it("verifies concurrent first presentations of one token once, and clearCache forgets", async () => {
    const { key, clock, verifier } = await setup();
    const token = await sign(key, clock.now);
    const all = await Promise.all(Array.from({ length: 50 }, () => verifier.verify(token)));
    expect(new Set(all.map((j) => j.subject))).toEqual(new Set(["user-1"]));
    expect(verifier.cacheStats()).toEqual({ size: 1, hits: 0, misses: 1 });
    verifier.clearCache();
    expect(verifier.cacheStats()).toEqual({ size: 0, hits: 0, misses: 0 });
    await verifier.verify(token);
    expect(verifier.cacheStats()).toEqual({ size: 1, hits: 0, misses: 1 });
  });

  it("holds a bounded number of tokens, evicting the least recently used", async () => {
    // The default bound is 10,000; 3 shows the policy without signing 10,001 tokens.
    const { key, clock, verifier } = await setup({ cacheMaxEntries: 3 });
    const [a, b, c, d] = await Promise.all(["a", "b", "c", "d"].map((sub) => sign(key, clock.now, { sub })));
    for (const t of [a, b, c]) await verifier.verify(t);
    await verifier.verify(a); // a becomes the most recently used
    await verifier.verify(d); // evicts b, the least recently used
    expect(verifier.cacheStats()).toEqual({ size: 3, hits: 1, misses: 4 });
    for (const t of [a, c, d]) await verifier.verify(t);
    expect(verifier.cacheStats()).toEqual({ size: 3, hits: 4, misses: 4 });
    await verifier.verify(b);
    expect(verifier.cacheStats()).toEqual({ size: 3, hits: 4, misses: 5 });
  });
});
