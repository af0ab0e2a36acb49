/**
 * The console as the Formstate server serves it at /console/: built on the
 * first request, with its security headers; off in production unless
 * FORMSTATE_CONSOLE=on, and off in development with FORMSTATE_CONSOLE=off.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { type TestServer, startTestServer } from "../support/test-server.js";

const production = { FORMSTATE_ENV: "production", FORMSTATE_JWKS_URL: "https://idp.example/jwks", FORMSTATE_JWT_ISSUER: "https://idp.example/", FORMSTATE_JWT_AUDIENCE: "api" };

describe("FORMSTATE_CONSOLE", () => {
  it("is on in development and off in production unless set", () => {
    expect(loadConfig({}).console).toBe(true);
    expect(loadConfig({ FORMSTATE_CONSOLE: "off" }).console).toBe(false);
    expect(loadConfig(production).console).toBe(false);
    expect(loadConfig({ ...production, FORMSTATE_CONSOLE: "on" }).console).toBe(true);
    expect(() => loadConfig({ FORMSTATE_CONSOLE: "yes" })).toThrow(/FORMSTATE_CONSOLE must be on or off/);
  });
});

describe("/console/ in development", () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer();
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("redirects /console to /console/, keeping the query", async () => {
    const res = await fetch(`${ts.url}/console?api=http://x`, { redirect: "manual" });
    expect(res.status).toBe(308);
    expect(res.headers.get("location")).toBe("/console/?api=http://x");
  });

  it("serves the page and the esbuild bundle with a content security policy", async () => {
    const page = await fetch(`${ts.url}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await page.text();
    expect(html).toContain('<script type="module" src="./console.js"></script>');

    const js = await fetch(`${ts.url}/console/console.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    const code = await js.text();
    // The bundle is the console with the Connect-Web client (its auth header) inside; no dump on failure.
    expect(code.includes("is missing from the page")).toBe(true);
    expect(code.includes("x-api-key")).toBe(true);
    expect(code.length).toBeGreaterThan(10_000);

    const head = await fetch(`${ts.url}/console/console.js`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBe(Buffer.byteLength(code));
  });

  it("answers 404 for other files and 405 for other methods", async () => {
    expect((await fetch(`${ts.url}/console/../../package.json`)).status).not.toBe(200);
    expect((await fetch(`${ts.url}/console/nope.js`)).status).toBe(404);
    expect((await fetch(`${ts.url}/console/`, { method: "POST", body: "x" })).status).toBe(405);
  });
});

describe("/console/ when off", () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ FORMSTATE_CONSOLE: "off" });
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("is not found", async () => {
    expect((await fetch(`${ts.url}/console/`)).status).toBe(404);
  });
});
