/**
 * Debian's Chromium for the browser tests, launched through playwright-core
 * with a fresh profile. Missing Chromium skips the suite with a message, or
 * fails it under CI=true.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium } from "playwright-core";

/** Debian's Chromium; FORMSTATE_TEST_CHROMIUM points elsewhere (for example to check the skip path). */
export const CHROMIUM = process.env.FORMSTATE_TEST_CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_MISSING = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing: install it with \`apt-get install -y chromium\``;

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A headless Chromium with a fresh --user-data-dir (playwright passes it for a persistent context). */
export async function launchChromium(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "formstate-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1100, height: 1300 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
