/**
 * The console's wiring: sign in, then load the account, the keys and the
 * usage through the generated Connect-Web clients. Nothing here builds a
 * request by hand; every call is a typed method of `src/client/web.ts`.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { UsageGranularity } from "../gen/formstate/v1/usage_service_pb.js";
import { type FormstateClients, createFormstateClient } from "../src/client/web.js";
import { byId, replace } from "./dom.js";
import { describeError } from "./errors.js";
import { type Session, defaultApiBase, projectFromToken, sessionFrom } from "./session.js";
import { renderAccount } from "./views/account.js";
import { renderKeyList, scopeFromForm, showSecretOnce } from "./views/keys.js";
import { renderModelTable, renderUsageChart } from "./views/usage.js";
import { type EarningsPeriod, periodRange, renderEarnings } from "./views/earnings.js";
import { showEvent } from "./views/alerts.js";

let session: Session | undefined;
let api: FormstateClients | undefined;
/** Ends the event stream of the signed-in session. */
let watching: AbortController | undefined;

const RANGES: Record<string, { ms: number; granularity: UsageGranularity }> = {
  "24h": { ms: 24 * 3600_000, granularity: UsageGranularity.HOUR },
  "7d": { ms: 7 * 86_400_000, granularity: UsageGranularity.DAY },
  "30d": { ms: 30 * 86_400_000, granularity: UsageGranularity.DAY },
};

/** A fresh idempotency key (getRandomValues, unlike randomUUID, also works on a plain-http static host). */
function requestId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Shows a panel's error (or clears it). */
function problem(id: string, err?: unknown): void {
  const el = byId(id);
  el.textContent = err === undefined ? "" : describeError(err);
  el.hidden = err === undefined;
}

async function loadAccount(): Promise<void> {
  if (!api || !session) return;
  const { account } = await api.accounts.getAccount({ name: `accounts/${session.project}` });
  if (account) renderAccount(byId("account"), account);
}

async function loadKeys(): Promise<void> {
  if (!api || !session) return;
  try {
    const { apiKeys } = await api.apiKeys.listApiKeys({ parent: `accounts/${session.project}`, pageSize: 100 });
    renderKeyList(byId("keys-body"), apiKeys);
    problem("keys-error");
  } catch (err) {
    problem("keys-error", err);
  }
}

async function loadUsage(): Promise<void> {
  if (!api || !session) return;
  const range = RANGES[byId<HTMLSelectElement>("usage-range").value] ?? RANGES["24h"];
  const end = new Date();
  const start = new Date(end.getTime() - range.ms);
  const parent = `accounts/${session.project}`;
  try {
    const [series, summary] = await Promise.all([
      api.usage.getUsageTimeseries({ parent, startTime: timestampFromDate(start), endTime: timestampFromDate(end), granularity: range.granularity }),
      api.usage.getUsageSummary({ parent, startTime: timestampFromDate(start), endTime: timestampFromDate(end) }),
    ]);
    renderUsageChart(byId("usage-chart"), series, range.granularity === UsageGranularity.HOUR);
    renderModelTable(byId("models-body"), byId("models-foot"), summary);
    byId("usage-updated").textContent = `Updated ${end.toISOString().slice(11, 19)} UTC`;
    problem("usage-error");
  } catch (err) {
    problem("usage-error", err);
  }
}

async function loadEarnings(): Promise<void> {
  if (!api || !session) return;
  const { start, end } = periodRange(byId<HTMLSelectElement>("earnings-period").value as EarningsPeriod, new Date());
  try {
    const res = await api.billing.getPublisherEarnings({
      parent: `accounts/${session.project}`,
      startTime: start && timestampFromDate(start),
      endTime: end && timestampFromDate(end),
    });
    renderEarnings(byId("earnings-body"), byId("earnings-foot"), byId("earnings-stats"), res);
    problem("earnings-error");
  } catch (err) {
    problem("earnings-error", err);
  }
}

function streamState(state: "connecting" | "live" | "retrying" | "stopped", text: string): void {
  const el = byId("alerts-status");
  el.dataset.state = state;
  el.textContent = text;
}

/** Waits `ms`, or less when the signal aborts. */
const pause = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });

/**
 * Keeps the account's event stream open while signed in: each event goes to
 * the alerts panel (credits also refresh the account card). A dropped stream
 * is opened again with backoff; a refused credential stops it for good.
 */
async function watchEvents(client: FormstateClients, project: string, signal: AbortSignal): Promise<void> {
  let delayMs = 1_000;
  while (!signal.aborted) {
    streamState("connecting", "Connecting…");
    try {
      for await (const m of client.usage.watchAccountEvents({ parent: `accounts/${project}` }, { signal })) {
        delayMs = 1_000;
        streamState("live", "Live");
        if (m.kind.case !== "event") continue;
        showEvent(byId("alerts-list"), m.kind.value);
        if (m.kind.value.payload.case === "creditsAdded") void loadAccount().catch((err) => problem("account-error", err));
      }
    } catch (err) {
      if (signal.aborted) return;
      const code = ConnectError.from(err).code;
      if (code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.NotFound) {
        streamState("stopped", `Stopped: ${describeError(err)}`);
        return;
      }
      streamState("retrying", `Reconnecting in ${delayMs / 1000} s (${describeError(err)})`);
    }
    await pause(delayMs, signal);
    delayMs = Math.min(delayMs * 2, 30_000);
  }
}

async function loadAll(): Promise<void> {
  try {
    await loadAccount();
    problem("account-error");
  } catch (err) {
    problem("account-error", err);
  }
  await Promise.all([loadKeys(), loadUsage(), loadEarnings()]);
}

function showSignedIn(on: boolean): void {
  byId("signin").hidden = on;
  byId("app").hidden = !on;
  byId("whoami").textContent = on && session ? `${session.project} @ ${session.baseUrl}` : "";
}

async function signIn(ev: SubmitEvent): Promise<void> {
  ev.preventDefault();
  const next = sessionFrom({
    baseUrl: byId<HTMLInputElement>("api-base").value,
    secret: byId<HTMLTextAreaElement>("secret").value,
    project: byId<HTMLInputElement>("project").value,
  });
  if (typeof next === "string") {
    byId("signin-error").textContent = next;
    byId("signin-error").hidden = false;
    return;
  }
  const client = createFormstateClient({ baseUrl: next.baseUrl, ...next.credential });
  try {
    // The account read doubles as the credential check: a bad token never shows the console.
    await client.accounts.getAccount({ name: `accounts/${next.project}` });
  } catch (err) {
    byId("signin-error").textContent = describeError(err);
    byId("signin-error").hidden = false;
    return;
  }
  byId("signin-error").hidden = true;
  byId<HTMLTextAreaElement>("secret").value = "";
  session = next;
  api = client;
  showSignedIn(true);
  watching = new AbortController();
  void watchEvents(client, next.project, watching.signal);
  await loadAll();
}

function signOut(): void {
  session = undefined;
  api = undefined;
  watching?.abort();
  watching = undefined;
  for (const id of ["account", "keys-body", "models-body", "models-foot", "usage-chart", "new-key", "earnings-body", "earnings-foot", "earnings-stats", "alerts-list"]) replace(byId(id));
  byId("alerts-status").textContent = "";
  byId("new-key").hidden = true;
  showSignedIn(false);
}

async function createKey(ev: SubmitEvent): Promise<void> {
  ev.preventDefault();
  if (!api || !session) return;
  const name = byId<HTMLInputElement>("key-name");
  try {
    const res = await api.apiKeys.createApiKey({
      parent: `accounts/${session.project}`,
      apiKey: { displayName: name.value.trim(), scopes: [scopeFromForm(byId<HTMLSelectElement>("key-scope").value)] },
      requestId: requestId(),
    });
    showSecretOnce(byId("new-key"), res.secret);
    name.value = "";
    problem("keys-error");
  } catch (err) {
    problem("keys-error", err);
    return;
  }
  await Promise.all([loadKeys(), loadAccount().catch((err) => problem("account-error", err))]);
}

function start(): void {
  byId<HTMLInputElement>("api-base").value = defaultApiBase(location);
  byId("secret").addEventListener("input", () => {
    const project = byId<HTMLInputElement>("project");
    const claimed = projectFromToken(byId<HTMLTextAreaElement>("secret").value);
    if (claimed && !project.value) project.value = claimed;
  });
  byId<HTMLFormElement>("signin-form").addEventListener("submit", (ev) => void signIn(ev));
  byId<HTMLFormElement>("key-form").addEventListener("submit", (ev) => void createKey(ev));
  byId("signout").addEventListener("click", signOut);
  byId("refresh").addEventListener("click", () => void loadAll());
  byId("usage-range").addEventListener("change", () => void loadUsage());
  byId("earnings-period").addEventListener("change", () => void loadEarnings());
  document.body.dataset.ready = "true";
}

start();
