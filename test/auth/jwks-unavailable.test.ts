/**
 * The identity provider's JWKS unreachable: a JWT call answers UNAVAILABLE
 * (JWKS_UNAVAILABLE, which clients retry), not UNAUTHENTICATED, and /healthz
 * says DEGRADED with `jwks: "unavailable"`; once the JWKS answers again the
 * same token works and /healthz is SERVING. A real JWKS server on loopback.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccountService } from "../../gen/formstate/v1/account_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

describe("JWKS unreachable", () => {
  let t: TestServer;
  let idp: http.Server;
  let up = false;
  let token: string;

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    idp = http.createServer((_req, res) => {
      if (!up) {
        res.writeHead(503).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => idp.listen(0, "127.0.0.1", () => r()));
    const jwksUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`;
    t = await startTestServer({ FORMSTATE_JWKS_URL: jwksUrl, FORMSTATE_JWT_ISSUER: "https://idp.test", FORMSTATE_JWT_AUDIENCE: "formstate" });
    token = await new SignJWT({ project_id: "jwks", role: "admin" })
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setSubject("alice")
      .setIssuer("https://idp.test")
      .setAudience("formstate")
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(privateKey);
  });
  afterAll(async () => {
    await t?.close();
    idp?.close();
  });

  const healthz = async () => (await fetch(`${t.url}/healthz`)).json() as Promise<Record<string, string>>;

  it("answers UNAVAILABLE (retryable) while the JWKS cannot be fetched, and /healthz says DEGRADED", async () => {
    const err = await t
      .client(AccountService, t.grpc(token))
      .getAccount({ name: "accounts/jwks" })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("JWKS_UNAVAILABLE");
    const health = await healthz();
    expect(health).toMatchObject({ status: "DEGRADED", jwks: "unavailable" });
  });

  it("recovers when the JWKS answers again", async () => {
    up = true;
    const outcome = await t
      .client(AccountService, t.grpc(token))
      .getAccount({ name: "accounts/jwks" })
      .then(() => "ok", (e: unknown) => Code[ConnectError.from(e).code]);
    // Authenticated now: the account simply does not exist yet.
    expect(["ok", "NotFound"]).toContain(outcome);
    expect(await healthz()).toMatchObject({ status: "SERVING", jwks: "ok" });
  });
});
