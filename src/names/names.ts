/**
 * Every resource name Formstate formats or parses, in one place (AIP-122).
 * Project resources live under `accounts/{project}`; catalog resources are
 * `agents/{agent}` and `models/{provider}/{model}`. Parsing is structural
 * (segments, not the protovalidate patterns, which run before): a name that
 * does not have the shape parses to undefined, never to a guess.
 */

/** The collections under `accounts/{project}/`. */
export type Collection =
  | "apiKeys"
  | "members"
  | "sessions"
  | "wallets"
  | "hires"
  | "authorizations"
  | "usageRecords"
  | "invocations"
  | "creditTransactions"
  | "spendAlerts"
  | "alertDeliveries"
  | "payouts";

export const collections: readonly Collection[] = [
  "apiKeys",
  "members",
  "sessions",
  "wallets",
  "hires",
  "authorizations",
  "usageRecords",
  "invocations",
  "creditTransactions",
  "spendAlerts",
  "alertDeliveries",
  "payouts",
];

/** What each collection's resources are called in messages ("API key \"…\" not found"). */
export const collectionNoun: Record<Collection, string> = {
  apiKeys: "API key",
  members: "member",
  sessions: "session",
  wallets: "wallet binding",
  hires: "hire",
  authorizations: "authorization",
  usageRecords: "usage record",
  invocations: "invocation",
  creditTransactions: "credit transaction",
  spendAlerts: "spend alert",
  alertDeliveries: "alert delivery",
  payouts: "payout",
};

/** A parsed resource name. */
export type ResourceName =
  | { kind: "account"; project: string }
  | { kind: "subscription"; project: string }
  | { kind: "child"; project: string; collection: Collection; id: string }
  | { kind: "agent"; id: string }
  | { kind: "model"; provider: string; model: string };

// ---- formatting ----

export const accountName = (project: string) => `accounts/${project}`;
export const subscriptionName = (project: string) => `${accountName(project)}/subscription`;
export const childName = (project: string, collection: Collection, id: string) => `${accountName(project)}/${collection}/${id}`;
export const keyName = (project: string, id: string) => childName(project, "apiKeys", id);
export const memberName = (project: string, userId: string) => childName(project, "members", userId);
export const sessionName = (project: string, id: string) => childName(project, "sessions", id);
export const bindingName = (project: string, id: string) => childName(project, "wallets", id);
export const hireName = (project: string, id: string) => childName(project, "hires", id);
export const authorizationName = (project: string, id: string) => childName(project, "authorizations", id);
export const recordName = (project: string, id: string) => childName(project, "usageRecords", id);
export const invocationName = (project: string, id: string) => childName(project, "invocations", id);
export const creditTransactionName = (project: string, id: string) => childName(project, "creditTransactions", id);
export const payoutName = (project: string, id: string) => childName(project, "payouts", id);
export const agentName = (id: string) => `agents/${id}`;
/** `models/{provider}/{model}` from the model id `provider/model`. */
export const modelName = (id: string) => `models/${id}`;

/** Formats any parsed name back; `formatName(parseName(n)!) === n` for every name that parses. */
export function formatName(n: ResourceName): string {
  switch (n.kind) {
    case "account":
      return accountName(n.project);
    case "subscription":
      return subscriptionName(n.project);
    case "child":
      return childName(n.project, n.collection, n.id);
    case "agent":
      return agentName(n.id);
    case "model":
      return modelName(`${n.provider}/${n.model}`);
  }
}

// ---- parsing ----

const isCollection = (s: string): s is Collection => (collections as readonly string[]).includes(s);

/** Any resource name, or undefined when it has no known shape. */
export function parseName(name: string): ResourceName | undefined {
  const s = name.split("/");
  if (s.some((seg) => seg === "")) return undefined;
  if (s[0] === "accounts") {
    if (s.length === 2) return { kind: "account", project: s[1] };
    if (s.length === 3 && s[2] === "subscription") return { kind: "subscription", project: s[1] };
    if (s.length === 4 && isCollection(s[2])) return { kind: "child", project: s[1], collection: s[2], id: s[3] };
    return undefined;
  }
  if (s[0] === "agents" && s.length === 2) return { kind: "agent", id: s[1] };
  if (s[0] === "models" && s.length === 3) return { kind: "model", provider: s[1], model: s[2] };
  return undefined;
}

/** The project a project-scoped name (`accounts/{project}[/…]`) belongs to; undefined for catalog names and garbage. */
export function projectOfName(name: string): string | undefined {
  const n = parseName(name);
  return n && (n.kind === "account" || n.kind === "subscription" || n.kind === "child") ? n.project : undefined;
}

/** `accounts/{project}` → project; undefined otherwise. */
export function parseAccountName(name: string): string | undefined {
  const n = parseName(name);
  return n?.kind === "account" ? n.project : undefined;
}

/** `accounts/{project}/{collection}/{id}` of the given collection; undefined otherwise. */
export function parseChildName(name: string, collection: Collection): { project: string; id: string } | undefined {
  const n = parseName(name);
  return n?.kind === "child" && n.collection === collection ? { project: n.project, id: n.id } : undefined;
}

/** The agent id of `agents/{id}`, or the argument when it is already a bare id. */
export function agentIdOf(nameOrId: string): string {
  return nameOrId.startsWith("agents/") ? nameOrId.slice("agents/".length) : nameOrId;
}

/** The model id `provider/model` of `models/provider/model`, or the argument when it is already an id. */
export function modelIdOf(nameOrId: string): string {
  return nameOrId.startsWith("models/") ? nameOrId.slice("models/".length) : nameOrId;
}

/** The provider namespace of a model id or name (`openai` in `models/openai/gpt`). */
export function providerOf(nameOrId: string): string {
  return modelIdOf(nameOrId).split("/")[0];
}

/** Whether an actor string (`hired_by`, ledger `actor`) is an API key's name rather than a user id. */
export function isKeyName(actor: string): boolean {
  const n = parseName(actor);
  return n?.kind === "child" && n.collection === "apiKeys";
}
