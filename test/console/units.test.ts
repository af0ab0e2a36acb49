/**
 * The console's pure parts, without a browser: money formatting from
 * integer micros, how the sign-in form becomes a session, earnings periods
 * and the alerts panel's lines.
 */
import { type MessageInitShape, create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { AccountEventSchema } from "../../gen/formstate/v1/usage_service_pb.js";
import { describeEvent } from "../../console/views/alerts.js";
import { periodRange } from "../../console/views/earnings.js";
import { formatCount, formatUsd } from "../../console/money.js";
import { credentialFrom, defaultApiBase, projectFromToken, sessionFrom } from "../../console/session.js";

const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
const jwt = (claims: unknown) => `${b64url({ alg: "EdDSA" })}.${b64url(claims)}.sig`;

describe("formatUsd", () => {
  it.each<[bigint, string]>([
    [0n, "$0.00"],
    [6_000n, "$0.006"],
    [12_345n, "$0.012345"],
    [2_500_000n, "$2.50"],
    [4_494_000n, "$4.494"],
    [1n, "$0.000001"],
    [1_234_567_890_000n, "$1,234,567.89"],
    [-1_000_000n, "-$1.00"],
    [9_007_199_254_740_993_000_001n, "$9,007,199,254,740,993.000001"], // beyond 2^53: no float anywhere
  ])("%s micros -> %s", (micros, text) => {
    expect(formatUsd(micros)).toBe(text);
  });

  it("formats counts with separators", () => {
    expect(formatCount(251_000n)).toBe("251,000");
  });
});

describe("sign-in form -> session", () => {
  it("tells API keys from tokens by the key prefix", () => {
    expect(credentialFrom(" fs_live_abcdefghijklmnop_secret ")).toEqual({ apiKey: "fs_live_abcdefghijklmnop_secret" });
    expect(credentialFrom("fs_test_x")).toEqual({ apiKey: "fs_test_x" });
    expect(credentialFrom("eyJ.a.b")).toEqual({ token: "eyJ.a.b" });
  });

  it("reads the project from a token's project_id or project claim, and nothing from other strings", () => {
    expect(projectFromToken(jwt({ project_id: "acme" }))).toBe("acme");
    expect(projectFromToken(jwt({ project: "beta" }))).toBe("beta");
    expect(projectFromToken(jwt({ sub: "x" }))).toBeUndefined();
    expect(projectFromToken("fs_live_abc")).toBeUndefined();
    expect(projectFromToken("a.%%%.c")).toBeUndefined();
  });

  it("takes the API URL from ?api= or else the page's origin", () => {
    expect(defaultApiBase({ search: "?api=https%3A%2F%2Fapi.example.com", origin: "https://static.example" })).toBe("https://api.example.com");
    expect(defaultApiBase({ search: "", origin: "http://localhost:8080" })).toBe("http://localhost:8080");
  });

  it("builds a session or says what is wrong", () => {
    expect(sessionFrom({ baseUrl: "http://127.0.0.1:8080/", secret: jwt({ project_id: "acme" }), project: "" })).toEqual({
      baseUrl: "http://127.0.0.1:8080",
      credential: { token: jwt({ project_id: "acme" }) },
      project: "acme",
    });
    expect(sessionFrom({ baseUrl: "https://api.example.com/formstate", secret: "fs_live_k", project: "acme" })).toMatchObject({ baseUrl: "https://api.example.com/formstate", credential: { apiKey: "fs_live_k" } });
    expect(sessionFrom({ baseUrl: "http://x", secret: "  ", project: "acme" })).toBe("Paste a token or an API key.");
    expect(sessionFrom({ baseUrl: "ftp://x", secret: "t", project: "acme" })).toBe("The API URL must be http:// or https://.");
    expect(sessionFrom({ baseUrl: "not a url", secret: "t", project: "acme" })).toBe("The API URL is not a URL.");
    expect(sessionFrom({ baseUrl: "http://x", secret: "fs_live_k", project: "" })).toMatch(/^Name the project/);
    expect(sessionFrom({ baseUrl: "http://x", secret: "t", project: "Bad Project" })).toMatch(/^Name the project/);
  });
});

describe("earnings periods", () => {
  const at = new Date(Date.UTC(2026, 0, 15, 23, 30)); // mid-January: last month is December of the year before
  it("are calendar months in UTC, or open", () => {
    expect(periodRange("month", at)).toEqual({ start: new Date(Date.UTC(2026, 0, 1)) });
    expect(periodRange("last-month", at)).toEqual({ start: new Date(Date.UTC(2025, 11, 1)), end: new Date(Date.UTC(2026, 0, 1)) });
    expect(periodRange("all", at)).toEqual({});
  });
});

describe("alert lines", () => {
  const event = (payload: MessageInitShape<typeof AccountEventSchema>["payload"]) => create(AccountEventSchema, { id: "evt_1", account: "accounts/p", payload });
  it("say what fired, in exact money", () => {
    expect(describeEvent(event({ case: "spendAlertFired", value: { spendAlert: "accounts/p/spendAlerts/a", period: "2026-12", threshold: { case: "thresholdMicros", value: 5_000n }, spentMicros: 5_500n, description: "five mills" } }))).toBe(
      'Spend alert "five mills": the account spent $0.0055, over $0.005 (2026-12)',
    );
    expect(describeEvent(event({ case: "spendAlertFired", value: { apiKey: "accounts/p/apiKeys/k1", period: "cap:1000000", threshold: { case: "thresholdPercent", value: 80 }, baseMicros: 1_000_000n, spentMicros: 800_000n } }))).toBe(
      "Spend alert: key k1 spent $0.80, over 80% of $1.00 (cap:1000000)",
    );
    expect(describeEvent(event({ case: "creditsAdded", value: { amountMicros: 2_500_000n, balanceMicros: 7_500_001n, reason: "grant" } }))).toBe("Credits added: $2.50 (grant); balance $7.500001");
    expect(describeEvent(event({ case: undefined }))).toBe("An event this console does not know yet");
  });
});
