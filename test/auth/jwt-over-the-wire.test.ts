/**
 * JWT rejection through a real server configured like production: an
 * external identity provider's JWKS served over HTTP, issuer and audience set.
 */
import { createHmac } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { type JWK, SignJWT, exportJWK, exportSPKI, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { expectCode } from "../support/expect-error.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const ISSUER = "https://idp.example.test/";
const AUDIENCE = "formstate-api";
let ts: TestServer;
let idp: http.Server;
let signingKey: CryptoKey;
let publicPem: string;
let otherKey: CryptoKey;

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

function sign(claims: Record<string, unknown> = {}, opts: { key?: CryptoKey; kid?: string } = {}) {
  const payload = { sub: "idp-user", iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 600, project_id: "idp-proj", role: "admin", ...claims };
  return new SignJWT(payload).setProtectedHeader({ alg: "RS256", kid: opts.kid ?? "idp-key-1" }).sign(opts.key ?? signingKey);
}

const getAccount = (token?: string) =>
  ts.client(AccountService, ts.grpc(token)).getAccount({ name: "accounts/idp-proj" });

beforeAll(async () => {
  const pair = await generateKeyPair("RS256", { extractable: true });
  signingKey = pair.privateKey;
  publicPem = await exportSPKI(pair.publicKey);
  otherKey = (await generateKeyPair("RS256")).privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: "idp-key-1", alg: "RS256", use: "sig" };
  idp = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => idp.listen(0, "127.0.0.1", r));
  ts = await startTestServer({
    FORMSTATE_JWKS_URL: `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`,
    FORMSTATE_JWT_ISSUER: ISSUER,
    FORMSTATE_JWT_AUDIENCE: AUDIENCE,
  });
  expect(ts.app.devIssuer).toBeUndefined();
  await ts.client(AccountService, ts.grpc(await sign())).createAccount({ account: { displayName: "IdP" } });
});

afterAll(async () => {
  await ts?.close();
  idp?.close();
});

describe("JWTs from an external identity provider", () => {
  it("accepts a valid token", async () => {
    const res = await getAccount(await sign());
    expect(res.account?.displayName).toBe("IdP");
  });

  it.each<[string, () => Promise<string | undefined>, RegExp]>([
    ["missing token", async () => undefined, /missing credential/],
    ["malformed token", async () => "not-a-jwt", /malformed/i],
    ["three garbage segments", async () => "a.b.c", /malformed|invalid/i],
    ["expired", () => sign({ exp: now() - 3600, iat: now() - 7200 }), /expired/i],
    ["not yet valid", () => sign({ nbf: now() + 3600 }), /not yet valid|nbf/i],
    ["missing exp", () => sign({ exp: undefined }), /exp/i],
    ["missing project claim", () => sign({ project_id: undefined }), /project_id/],
    ["wrong issuer", () => sign({ iss: "https://evil.test/" }), /issuer/i],
    ["wrong audience", () => sign({ aud: "someone-else" }), /audience/i],
    ["bad signature", () => sign({}, { key: otherKey }), /signature/i],
    ["unknown kid", () => sign({}, { key: otherKey, kid: "rotated-away" }), /kid|key/i],
    [
      "alg none",
      async () => `${b64({ alg: "none", typ: "JWT" })}.${b64({ sub: "x", project_id: "idp-proj", iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })}.`,
      /alg|algorithm|none/i,
    ],
    [
      "HS256 signed with the public key",
      async () => {
        const body = `${b64({ alg: "HS256", typ: "JWT", kid: "idp-key-1" })}.${b64({ sub: "x", project_id: "idp-proj", role: "admin", iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })}`;
        return `${body}.${createHmac("sha256", publicPem).update(body).digest("base64url")}`;
      },
      /alg|algorithm|HS256/i,
    ],
  ])("rejects %s with UNAUTHENTICATED saying why", async (_label, token, why) => {
    const err = await expectCode(getAccount(await token()), Code.Unauthenticated, why);
    expect(err.rawMessage).not.toContain("eyJ");
  });

  it("a token for another project never reads this one", async () => {
    const other = await sign({ project_id: "someone-else" });
    await expectCode(getAccount(other), Code.NotFound);
  });
});
