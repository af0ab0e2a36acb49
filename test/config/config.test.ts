/** Configuration: defaults, production refusals, and one message naming every bad variable. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, usesDevIssuer } from "../../src/config.js";

describe("loadConfig", () => {
  it("runs with no configuration: port 8080, SQLite under ./data, the development issuer", () => {
    const c = loadConfig({});
    expect(c.mode).toBe("development");
    expect(c.port).toBe(8080);
    expect(c.databaseUrl).toMatch(/data\/formstate\.db$/);
    expect(usesDevIssuer(c)).toBe(true);
    expect(c.jwt).toMatchObject({ issuer: "formstate-dev", audience: "formstate", algorithms: ["RS256", "ES256", "EdDSA"], projectClaim: "project_id" });
    expect(c.corsOrigins).toEqual(["localhost"]);
  });

  it.each([{ FORMSTATE_ENV: "production" }, { NODE_ENV: "production" }])("production (%o) refuses to start without JWKS URL, issuer and audience", (env) => {
    let err: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    for (const v of ["FORMSTATE_JWKS_URL", "FORMSTATE_JWT_ISSUER", "FORMSTATE_JWT_AUDIENCE"]) expect(msg).toContain(v);
  });

  it("production with an IdP never uses the dev issuer", () => {
    const c = loadConfig({ FORMSTATE_ENV: "production", FORMSTATE_JWKS_URL: "https://idp.example/jwks", FORMSTATE_JWT_ISSUER: "https://idp.example/", FORMSTATE_JWT_AUDIENCE: "api" });
    expect(usesDevIssuer(c)).toBe(false);
    expect(c.corsOrigins).toEqual([]);
  });

  it("names every bad variable in one message", () => {
    let err: ConfigError | undefined;
    try {
      loadConfig({ PORT: "eighty", LOG_LEVEL: "loud", FORMSTATE_JWT_ALGORITHMS: "HS256,none", FORMSTATE_CORS_ORIGINS: "not a url", FORMSTATE_ENV: "staging", REDIS_URL: "http://x" });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err?.problems.map((p) => p.split(/[ =]/)[0])).toEqual(["FORMSTATE_ENV", "FORMSTATE_JWT_ALGORITHMS", "LOG_LEVEL", "FORMSTATE_CORS_ORIGINS", "PORT", "REDIS_URL"]);
    expect(err?.message).toContain("HS256, none");
  });
});
