/**
 * The browser console end to end in Debian's Chromium: built with esbuild,
 * served from another origin than the API (so CORS is exercised), signing in
 * with a dev token, creating a key, and seeing usage recorded through the
 * Node client appear in the chart and the per-model table. Saves a
 * screenshot to test-output/console.png.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Scope } from "../../gen/formstate/v1/access_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { buildConsole } from "../../console/build.js";
import { ModelVisibility } from "../../gen/formstate/v1/model_service_pb.js";
import { formatCount, formatUsd } from "../../console/money.js";
import { createFormstateClient } from "../../src/client/node.js";
import { type TestServer, startTestServer } from "../support/test-server.js";
import { type Browser, CHROMIUM_MISSING, launchChromium } from "./chromium.js";
import { type StaticHost, serveStatic } from "./static-host.js";

const PROJECT = "console-e2e";
const MODEL = "models/console-e2e/chat-1";
const AGENT = "agents/console-helper";
const SCREENSHOT = join(import.meta.dirname, "../../test-output/console.png");

if (CHROMIUM_MISSING && process.env.CI === "true") {
  describe("browser console in Chromium", () => {
    it("needs Chromium under CI", () => {
      throw new Error(CHROMIUM_MISSING);
    });
  });
} else if (CHROMIUM_MISSING) {
  console.warn(`skipping the browser console tests: ${CHROMIUM_MISSING}`);
}

describe.skipIf(Boolean(CHROMIUM_MISSING))(`browser console in Chromium${CHROMIUM_MISSING ? ` (skipped: ${CHROMIUM_MISSING})` : ""}`, () => {
  let host: StaticHost;
  let ts: TestServer;
  let browser: Browser;
  let page: Page;
  let adminToken: string;
  let newKeySecret = "";
  const adminClient = () => createFormstateClient({ baseUrl: ts.url, token: adminToken });

  beforeAll(async () => {
    host = await serveStatic(await buildConsole());
    // Only the static host's exact origin may call the API from a browser.
    // The catalog is published four hours back, so the usage backdated three hours below has a price in force
    // (pricing at occurrence); the clock only moves forward, as the rate limiter expects.
    const publishClock = { offsetMs: -4 * 3600_000, now: () => Date.now() + publishClock.offsetMs };
    ts = await startTestServer({ FORMSTATE_CORS_ORIGINS: host.origin, FORMSTATE_EVENT_HEARTBEAT_MS: "500" }, { clock: publishClock });
    adminToken = await ts.token({ projectId: PROJECT, role: "admin", subject: "console-admin", ttlSec: 24 * 3600 });
    const admin = createFormstateClient({ baseUrl: ts.url, token: adminToken });
    await admin.models.createModel({
      modelId: "console-e2e/chat-1",
      model: { displayName: "Chat 1", inputPriceMicrosPerMillion: 2_000_000n, outputPriceMicrosPerMillion: 8_000_000n },
    });
    await admin.agents.createAgent({ agentId: "console-helper", agent: { displayName: "Helper", pricePerInvocationMicros: 4_000n } });
    publishClock.offsetMs = 0;
    await admin.accounts.createAccount({ account: { displayName: "Console E2E", billingEmail: "ops@console.test" } });
    await admin.agents.hireAgent({ parent: `accounts/${PROJECT}`, agent: AGENT });
    browser = await launchChromium();
    page = await browser.context.newPage();
  }, 120_000); // a bundle, a server and a browser on a busy 2-core machine
  afterAll(async () => {
    await browser?.close();
    await ts?.close();
    await host?.close();
  });

  const text = (selector: string) => page.locator(selector).innerText();

  it("signs in from another origin with a dev token and shows the account", async () => {
    expect(new URL(host.origin).port).not.toBe(new URL(ts.url).port);
    await page.goto(`${host.origin}/console/?api=${encodeURIComponent(ts.url)}`);
    expect(await page.inputValue("#api-base")).toBe(ts.url);
    await page.fill("#secret", adminToken);
    expect(await page.inputValue("#project")).toBe(PROJECT); // read from the token's claim
    await page.click("#signin-submit");
    await page.waitForSelector("#app:not([hidden])");
    expect(await text("#account-project")).toBe(PROJECT);
    expect(await text("#account-plan")).toBe("Free");
    expect(await text("#account-credits")).toBe("$0.00");
    expect(await text("#account-slots")).toBe("1 of 1");
    expect(await text("#account-keys")).toBe("0 of 2");
    // The key list and the usage panels load on their own after the account: wait for them rather than race them.
    await expect.poll(() => text("#keys-body")).toContain("No API keys yet.");
    await expect.poll(() => text("#models-body")).toContain("No usage in this range.");
    // The chart has its 24 or 25 hourly buckets, all empty.
    const costs = await page.locator("#usage-chart rect.bar").evaluateAll((els) => els.map((e) => e.getAttribute("data-cost-micros")));
    expect(costs.length).toBeGreaterThanOrEqual(24);
    expect(new Set(costs)).toEqual(new Set(["0"]));
  });

  it("creates a key, shows its secret once, and lists it", async () => {
    await page.fill("#key-name", "console-made");
    await page.selectOption("#key-scope", "write");
    await page.click("#key-create");
    newKeySecret = await page.locator("#new-key-secret").innerText();
    expect(newKeySecret).toMatch(/^fs_(live|test)_[a-z0-9]{16}_[A-Za-z0-9]+$/);
    const row = page.locator("#keys-body tr", { hasText: "console-made" });
    await row.waitFor();
    expect(await row.innerText()).toMatch(/write\s+active/);
    // The account panel reloads alongside the key list: wait for it rather than race it.
    await expect.poll(() => text("#account-keys")).toBe("1 of 2");
    // The secret shown is the real one: the Node client calls with it.
    const keyed = createFormstateClient({ baseUrl: ts.url, apiKey: newKeySecret });
    expect((await keyed.accounts.getAccount({ name: `accounts/${PROJECT}` })).account?.displayName).toBe("Console E2E");
    // Dismissed, it is gone from the page for good.
    await page.click("#new-key-done");
    expect(await page.locator("#new-key-secret").count()).toBe(0);
    expect(await page.content()).not.toContain(newKeySecret);
  });

  it("draws usage recorded through the Node client in the chart and the per-model table", async () => {
    const keyed = createFormstateClient({ baseUrl: ts.url, apiKey: newKeySecret });
    const parent = `accounts/${PROJECT}`;
    // Now: 1,000 in x $2/M + 500 out x $8/M = 6,000 micros; three hours ago: 250,000 in x $2/M = 500,000 micros.
    await keyed.usage.recordUsage({ parent, requestId: "console-1", usage: { case: "modelUsage", value: { model: MODEL, inputTokens: 1_000n, outputTokens: 500n } } });
    const last = await keyed.usage.recordUsage({
      parent,
      requestId: "console-2",
      occurTime: timestampFromDate(new Date(Date.now() - 3 * 3600_000)),
      usage: { case: "modelUsage", value: { model: MODEL, inputTokens: 250_000n, outputTokens: 0n } },
    });
    // And one agent invocation now, 4,000 micros.
    const invoked = await adminClient().agents.invokeAgent({ parent, target: { case: "agent", value: AGENT }, requestId: "console-3", operation: "summarize" });

    await page.click("#refresh");
    const row = page.locator(`#models-body tr[data-model="${MODEL}"]`);
    await row.waitFor();
    const cells = await row.locator("td").allInnerTexts();
    expect(cells).toEqual([MODEL, "2", "251,000", "500", "$0.506"]);
    expect(await page.locator(`#models-body tr[data-agent="${AGENT}"] td`).allInnerTexts()).toEqual([`${AGENT} (invocations)`, "1", "-", "-", "$0.004"]);
    expect(await text("#usage-total")).toBe("$0.51");

    const bars = await page.locator("#usage-chart rect.bar").evaluateAll((els) =>
      els.map((e) => ({ cost: BigInt(e.getAttribute("data-cost-micros") ?? "0"), height: Number(e.getAttribute("height")) })),
    );
    expect(bars.reduce((sum, b) => sum + b.cost, 0n)).toBe(510_000n);
    // Two buckets three hours apart; bar heights follow the costs.
    const filled = bars.map((b, i) => ({ ...b, i })).filter((b) => b.cost > 0n);
    expect(filled.map((b) => b.cost)).toEqual([500_000n, 10_000n]);
    expect(filled[1].i - filled[0].i).toBe(3);
    expect(filled[0].height).toBeGreaterThan(100);
    expect(filled[1].height).toBeCloseTo((filled[0].height * 10_000) / 500_000, 1);
    // The account card followed: the month's Free credits ($5) minus the usage.
    expect(last.balanceMicros).toBe(5_000_000n - 506_000n);
    expect(invoked.balanceMicros).toBe(5_000_000n - 510_000n);
    expect(await text("#account-credits")).toBe("$4.49");

    mkdirSync(join(SCREENSHOT, ".."), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it("cannot reach the API from an origin CORS does not allow", async () => {
    // Same files, another origin (localhost is not 127.0.0.1 to a browser).
    const other = await browser.context.newPage();
    await other.goto(`http://localhost:${host.port}/console/?api=${encodeURIComponent(ts.url)}`);
    await other.fill("#secret", adminToken);
    await other.click("#signin-submit");
    const error = other.locator("#signin-error");
    await error.waitFor();
    // The browser hides why (CORS refusals look like network errors); the console says what to check.
    expect(await error.innerText()).toMatch(/^Unknown: Failed to fetch \(.*FORMSTATE_CORS_ORIGINS/);
    expect(await other.locator("#app").isHidden()).toBe(true);
    await other.close();
  });

  it("also runs as Formstate serves it at /console/, calling its own origin by default", async () => {
    const own = await browser.context.newPage();
    await own.goto(`${ts.url}/console/`);
    expect(await own.inputValue("#api-base")).toBe(ts.url);
    await own.fill("#secret", adminToken);
    await own.click("#signin-submit");
    await own.waitForSelector("#app:not([hidden])");
    await own.locator(`#models-body tr[data-model="${MODEL}"]`).waitFor();
    expect(await own.locator("#usage-total").innerText()).toBe("$0.51");
    await own.close();
  });

  it("signs in with an API key (project typed in) and shows what the key may not do", async () => {
    const keyed = await browser.context.newPage();
    await keyed.goto(`${host.origin}/console/?api=${encodeURIComponent(ts.url)}`);
    await keyed.fill("#secret", newKeySecret);
    expect(await keyed.inputValue("#project")).toBe(""); // a key names no project
    await keyed.fill("#project", PROJECT);
    await keyed.click("#signin-submit");
    await keyed.waitForSelector("#app:not([hidden])");
    await keyed.locator(`#models-body tr[data-model="${MODEL}"]`).waitFor();
    expect(await keyed.locator("#keys-body").innerText()).toContain("console-made");
    // A write-scope key may not create keys (admin scope): the server's refusal is shown, nothing else changes.
    await keyed.fill("#key-name", "not-allowed");
    await keyed.click("#key-create");
    const error = keyed.locator("#keys-error");
    await error.waitFor();
    expect(await error.innerText()).toMatch(/^PermissionDenied: /);
    expect(await keyed.locator("#new-key").isHidden()).toBe(true);
    await keyed.close();
  });

  it("shows a test-mode project as such, with its sandbox balance", async () => {
    const token = await ts.token({ projectId: "console-sandbox", role: "admin", subject: "console-sandbox-admin", ttlSec: 3600 });
    const c = createFormstateClient({ baseUrl: ts.url, token });
    await c.accounts.createAccount({ account: { displayName: "Staging", environment: KeyEnvironment.TEST } });
    await c.billing.addCredits({ parent: "accounts/console-sandbox", amountMicros: 2_500_000n, reason: "sandbox", requestId: "g" });
    const sandbox = await browser.context.newPage();
    await sandbox.goto(`${host.origin}/console/?api=${encodeURIComponent(ts.url)}`);
    await sandbox.fill("#secret", token);
    await sandbox.click("#signin-submit");
    await sandbox.waitForSelector("#app:not([hidden])");
    expect(await sandbox.locator("#account-mode").innerText()).toContain("test mode");
    expect(await sandbox.locator("#account-credits").innerText()).toBe("$2.50");
    await sandbox.close();
    // A live project shows no mode.
    expect(await page.locator("#account-mode").count()).toBe(0);
  });

  it("shows earnings by resource and period exactly as GetPublisherEarnings reports them", async () => {
    const admin = adminClient();
    await admin.models.createModel({ modelId: "console-e2e/public-1", model: { displayName: "Public 1", inputPriceMicrosPerMillion: 3_000_001n, visibility: ModelVisibility.PUBLIC } });
    // Another project pays for the public model (the console's own usage earns nothing).
    const buyerToken = await ts.token({ projectId: "console-buyer", role: "admin", subject: "buyer" });
    const buyer = createFormstateClient({ baseUrl: ts.url, token: buyerToken });
    await buyer.accounts.createAccount({ account: { displayName: "Buyer" } });
    for (const [i, tokens] of [123_457n, 9_999n].entries()) {
      await buyer.usage.recordUsage({ parent: "accounts/console-buyer", requestId: `buy-${i}`, usage: { case: "modelUsage", value: { model: "models/console-e2e/public-1", inputTokens: tokens } } });
    }
    const parent = `accounts/${PROJECT}`;
    const all = await admin.billing.getPublisherEarnings({ parent });
    expect(all.total?.usageCount).toBe(2n);
    expect(all.total?.earningsMicros).toBeGreaterThan(0n);

    await page.selectOption("#earnings-period", "all");
    const row = page.locator('#earnings-body tr[data-resource="models/console-e2e/public-1"]');
    await row.waitFor();
    const want = (t: typeof all.total) => [formatCount(t!.usageCount), formatUsd(t!.grossMicros), formatUsd(t!.platformFeeMicros), formatUsd(t!.clawbackMicros), formatUsd(t!.earningsMicros)];
    expect(await page.locator("#earnings-body tr").count()).toBe(all.resources.length);
    expect((await row.locator("td").allInnerTexts()).slice(1)).toEqual(want(all.resources[0].total));
    expect((await page.locator("#earnings-total td").allInnerTexts())).toEqual(want(all.total));
    expect(await text("#earnings-balance")).toBe(formatUsd(all.balanceMicros));
    expect(await text("#earnings-paid")).toBe(formatUsd(all.paidOutMicros));

    // This month (UTC) is what the server reports from the month's first instant; last month had none.
    const now = new Date();
    const month = await admin.billing.getPublisherEarnings({ parent, startTime: timestampFromDate(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))) });
    await page.selectOption("#earnings-period", "month");
    await expect.poll(() => page.locator("#earnings-total td").allInnerTexts()).toEqual(want(month.total));
    await page.selectOption("#earnings-period", "last-month");
    await expect.poll(() => text("#earnings-body")).toContain("No earnings in this period.");
    expect(await page.locator("#earnings-total td").allInnerTexts()).toEqual(["0", "$0.00", "$0.00", "$0.00", "$0.00"]);
    expect(await page.locator("#earnings-error").isHidden()).toBe(true);
  });

  it("shows a spend alert fired on the server, and credits granted, in the alerts panel without a reload", async () => {
    await expect.poll(() => page.locator("#alerts-status").getAttribute("data-state")).toBe("live");
    const admin = adminClient();
    // The account has spent $0.51 this month (less if the run straddles a month: the usage now is $0.01).
    const { spendAlert } = await admin.usage.createSpendAlert({
      parent: `accounts/${PROJECT}`,
      spendAlert: { threshold: { case: "thresholdMicros", value: 5_000n }, endpointUrl: "http://127.0.0.1:9/hooks", description: "console alert" },
    });
    await ts.app.alerts.check();
    const alert = page.locator('#alerts-list li[data-kind="spendAlertFired"]');
    await alert.waitFor();
    const { alertDeliveries } = await admin.usage.listAlertDeliveries({ parent: `accounts/${PROJECT}` });
    const delivery = alertDeliveries.find((d) => d.spendAlert === spendAlert!.name)!;
    const webhook = JSON.parse(delivery.payload) as { id: string; data: { spent_micros: number; period: string } };
    expect(await alert.getAttribute("data-event-id")).toBe(webhook.id);
    expect(await alert.innerText()).toContain(`Spend alert "console alert": the account spent ${formatUsd(BigInt(webhook.data.spent_micros))}, over $0.005 (${webhook.data.period})`);

    await admin.billing.addCredits({ parent: `accounts/${PROJECT}`, amountMicros: 1_000_000n, reason: "console top-up", requestId: "console-top-up" });
    const credits = page.locator('#alerts-list li[data-kind="creditsAdded"]');
    await credits.waitFor();
    expect(await credits.innerText()).toMatch(/Credits added: \$1\.00 \(console top-up\); balance \$5\.49/);
    // Newest first, and the account card followed without a reload.
    expect(await page.locator("#alerts-list li").first().getAttribute("data-kind")).toBe("creditsAdded");
    await expect.poll(() => text("#account-credits")).toBe("$5.49");
    await page.screenshot({ path: join(SCREENSHOT, "../console-alerts.png"), fullPage: true });
  });

  it("stops the alerts stream, saying why, when the key it signed in with is revoked", async () => {
    const admin = adminClient();
    const { apiKey, secret } = await admin.apiKeys.createApiKey({ parent: `accounts/${PROJECT}`, apiKey: { displayName: "console-reader", scopes: [Scope.READ] }, requestId: "console-reader" });
    const keyed = await browser.context.newPage();
    await keyed.goto(`${host.origin}/console/?api=${encodeURIComponent(ts.url)}`);
    await keyed.fill("#secret", secret);
    await keyed.fill("#project", PROJECT);
    await keyed.click("#signin-submit");
    await expect.poll(() => keyed.locator("#alerts-status").getAttribute("data-state")).toBe("live");
    await admin.apiKeys.revokeApiKey({ name: apiKey!.name });
    await expect.poll(() => keyed.locator("#alerts-status").getAttribute("data-state")).toBe("stopped");
    expect(await keyed.locator("#alerts-status").innerText()).toMatch(/^Stopped: Unauthenticated: /);
    await keyed.close();
  });

  it("stops the event stream on sign-out", async () => {
    await expect.poll(() => ts.app.events.watching(PROJECT)).toBeGreaterThan(0);
    await page.click("#signout");
    await expect.poll(() => ts.app.events.watching(PROJECT)).toBe(0);
    expect(await page.locator("#alerts-list li").count()).toBe(0);
  });

  it("refuses a bad token with the server's reason and stays signed out", async () => {
    const other = await browser.context.newPage();
    await other.goto(`${host.origin}/console/?api=${encodeURIComponent(ts.url)}`);
    await other.fill("#secret", `${adminToken.slice(0, -4)}AAAA`);
    await other.click("#signin-submit");
    const error = other.locator("#signin-error");
    await error.waitFor();
    expect(await error.innerText()).toMatch(/^Unauthenticated: /);
    expect(await other.locator("#app").isHidden()).toBe(true);
    await other.close();
  });
});
