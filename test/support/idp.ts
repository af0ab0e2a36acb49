/** A stand-in identity provider: an RSA key, its JWKS served over real HTTP, and signed tokens. */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { type JWK, SignJWT, exportJWK, generateKeyPair } from "jose";

export interface TestIdp {
  jwksUrl: string;
  issuer: string;
  audience: string;
  sign(claims: { sub: string; project_id: string; role?: string }): Promise<string>;
  close(): void;
}

export async function startIdp(issuer = "https://idp.test/", audience = "formstate-api"): Promise<TestIdp> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: "idp-1", alg: "RS256", use: "sig" };
  const server = http.createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    jwksUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    issuer,
    audience,
    sign: (claims) =>
      new SignJWT({ ...claims })
        .setProtectedHeader({ alg: "RS256", kid: "idp-1" })
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime("10m")
        .sign(privateKey),
    close: () => server.close(),
  };
}
