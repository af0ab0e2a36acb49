/**
 * The development issuer: its key file is created private and reused, and
 * the tokens it signs verify through createJwtVerifier against its JWKS
 * served over real HTTP, exactly as an external IdP's would.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { AuthError } from "../../src/auth/auth-error.js";
import { type DevIssuer, DEV_ISSUER_KEY_FILE, loadDevIssuer } from "../../src/auth/dev-issuer.js";
import { createJwtVerifier } from "../../src/auth/jwt-verifier.js";

const ISSUER = "http://127.0.0.1/formstate-dev";
const AUDIENCE = "formstate";
const root = mkdtempSync(join(tmpdir(), "dev-issuer-"));
let n = 0;
/** A data directory that does not exist yet (nested, so both levels get created). */
const freshDir = () => join(root, `case-${++n}`, "data");
afterAll(() => rmSync(root, { recursive: true, force: true }));

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** Serves the issuer's jwks() the way the server does, at /.well-known/jwks.json. */
async function serveJwks(issuer: DevIssuer): Promise<{ url: string; fetches: () => number }> {
  let fetches = 0;
  const server = http.createServer((req, res) => {
    if (req.url !== "/.well-known/jwks.json") return void res.writeHead(404).end();
    fetches++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(issuer.jwks()));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`, fetches: () => fetches };
}

describe("loadDevIssuer", () => {
  it("creates the key file with mode 0600 (and its directory), and reuses it on the next load", async () => {
    const dataDir = freshDir();
    const first = await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE });
    const file = join(dataDir, DEV_ISSUER_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(readFileSync(file, "utf8"));
    expect(stored).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", kid: first.kid, use: "sig" });
    expect(typeof stored.d).toBe("string");

    const second = await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE });
    expect(second.kid).toBe(first.kid);
    expect(second.jwks()).toEqual(first.jwks());
    expect(readFileSync(file, "utf8")).toBe(JSON.stringify(stored));
  });

  it("publishes only the public key, with kid, alg and use", async () => {
    const issuer = await loadDevIssuer({ dataDir: freshDir(), issuer: ISSUER, audience: AUDIENCE });
    const { keys } = issuer.jwks();
    expect(keys).toHaveLength(1);
    expect(Object.keys(keys[0]).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"]);
    expect(keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig", kid: issuer.kid });
    // A copy each call: editing it does not change what the issuer serves.
    keys[0].kid = "tampered";
    expect(issuer.jwks().keys[0].kid).toBe(issuer.kid);
  });

  it("signs tokens that verify through createJwtVerifier against its JWKS over HTTP", async () => {
    const dataDir = freshDir();
    const issuer = await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE });
    const jwks = await serveJwks(issuer);
    const verifier = createJwtVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, algorithms: ["RS256", "ES256", "EdDSA"] });

    const token = await issuer.sign({ subject: "dana", projectId: "demo", role: "developer", sessionId: "s-1" });
    const jwt = await verifier.verify(token);
    expect(jwt).toMatchObject({ subject: "dana", projectId: "demo", role: "developer", sessionId: "s-1" });
    expect(jwks.fetches()).toBe(1);

    const header = decodeProtectedHeader(token);
    expect(header).toEqual({ alg: "EdDSA", kid: issuer.kid, typ: "JWT" });
    const claims = decodeJwt(token);
    expect(Object.keys(claims).sort()).toEqual(["aud", "exp", "iat", "iss", "jti", "nbf", "project_id", "role", "sid", "sub"]);
    expect(claims).toMatchObject({ iss: ISSUER, aud: AUDIENCE, sub: "dana", project_id: "demo", role: "developer", sid: "s-1" });
    expect(claims.nbf).toBe(claims.iat);
    expect(claims.exp! - claims.iat!).toBe(12 * 3600);

    // A token signed after a restart (the key reloaded from disk) verifies against the same set.
    const reloaded = await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE });
    expect(await verifier.verify(await reloaded.sign({ subject: "eve", projectId: "demo" }))).toMatchObject({ subject: "eve", role: undefined });
    expect(jwks.fetches()).toBe(1);
  });

  it("honours ttlSec and the injected clock, and gives each token its own jti and session", async () => {
    let now = Date.parse("2030-01-01T00:00:00Z");
    const issuer = await loadDevIssuer({ dataDir: freshDir(), issuer: ISSUER, audience: AUDIENCE, now: () => now });
    const verifier = createJwtVerifier({ jwksUrl: (await serveJwks(issuer)).url, issuer: ISSUER, audience: AUDIENCE, algorithms: ["EdDSA"], now: () => now });
    const short = await issuer.sign({ subject: "dana", projectId: "demo", ttlSec: 60 });
    const again = await issuer.sign({ subject: "dana", projectId: "demo", ttlSec: 60 });
    expect(decodeJwt(short)).toMatchObject({ iat: now / 1000, exp: now / 1000 + 60 });
    expect(decodeJwt(short).jti).not.toBe(decodeJwt(again).jti);
    expect(decodeJwt(short).sid).not.toBe(decodeJwt(again).sid);
    expect((await verifier.verify(short)).expiresAt).toBe(now / 1000 + 60);

    now += 120_000;
    const err = await verifier.verify(short).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect(err).toMatchObject({ reason: "TOKEN_EXPIRED", message: "token expired" });
    await expect(issuer.sign({ subject: "dana", projectId: "demo", ttlSec: 0 })).rejects.toThrow(/ttlSec must be a positive/);
    await expect(issuer.sign({ subject: "", projectId: "demo" })).rejects.toThrow(/subject is required/);
  });

  it("can use ES256 for a new key, and an existing file keeps its own algorithm", async () => {
    const dataDir = freshDir();
    const es = await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE, algorithm: "ES256" });
    expect(es.jwks().keys[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256" });
    expect(Object.keys(es.jwks().keys[0]).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
    const verifier = createJwtVerifier({ jwksUrl: (await serveJwks(es)).url, issuer: ISSUER, audience: AUDIENCE, algorithms: ["ES256"] });
    expect((await verifier.verify(await es.sign({ subject: "s", projectId: "p" }))).projectId).toBe("p");
    const again = await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE, algorithm: "EdDSA" });
    expect(again).toMatchObject({ kid: es.kid, alg: "ES256" });
  });

  it("agrees on one key when two loads race on an empty directory", async () => {
    const dataDir = freshDir();
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE })));
    expect(new Set([a.kid, b.kid, c.kid]).size).toBe(1);
    expect(JSON.parse(readFileSync(join(dataDir, DEV_ISSUER_KEY_FILE), "utf8")).kid).toBe(a.kid);
  });

  it("tightens a key file others can read, and refuses a file that is not a private JWK", async () => {
    const dataDir = freshDir();
    await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE });
    const file = join(dataDir, DEV_ISSUER_KEY_FILE);
    chmodSync(file, 0o644);
    await loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE });
    expect(statSync(file).mode & 0o777).toBe(0o600);

    writeFileSync(file, "{not json");
    await expect(loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE })).rejects.toThrow(/is not valid JSON; delete it/);
    writeFileSync(file, JSON.stringify({ kty: "OKP", crv: "Ed25519", x: "abc", kid: "k" }));
    await expect(loadDevIssuer({ dataDir, issuer: ISSUER, audience: AUDIENCE })).rejects.toThrow(/is not a private JWK with a kid/);
  });
});
