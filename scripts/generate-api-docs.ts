/**
 * Writes docs/api.md from the contract: every service and method with its
 * proto comment, who may call it (the `(formstate.v1.access)` option, read
 * from the descriptor exactly as the auth interceptor reads it), its request
 * and response, the errors its comment documents, and every message and enum
 * of the formstate.v1 package.
 *
 *   npm run docs                                         rewrite docs/api.md
 *   node --import tsx scripts/generate-api-docs.ts --check   fail when it is stale (npm test)
 *
 * The descriptors come from `buf build` (with source info, so comments are
 * there); the access option's schema comes from gen/.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  type DescEnum,
  type DescField,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  createFileRegistry,
  fromBinary,
  toJson,
  getOption,
  hasOption,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { FieldRulesSchema, field as fieldRules, message as messageRules, oneof as oneofRules } from "../gen/buf/validate/validate_pb.js";
import { type AccessPolicy, AccessPolicySchema, Role, Scope, Tenancy, access } from "../gen/formstate/v1/access_pb.js";

const root = join(import.meta.dirname, "..");
const OUT = join(root, "docs/api.md");
const PACKAGE = "formstate.v1";

/** Connect codes a comment may name; the order is the order they are listed in. */
const CODES = [
  "INVALID_ARGUMENT",
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "FAILED_PRECONDITION",
  "ABORTED",
  "RESOURCE_EXHAUSTED",
  "OUT_OF_RANGE",
  "UNAVAILABLE",
  "UNIMPLEMENTED",
  "DEADLINE_EXCEEDED",
  "CANCELED",
];

function loadFiles(): DescFile[] {
  const bin = execFileSync(join(root, "node_modules/.bin/buf"), ["build", "--as-file-descriptor-set", "-o", "-"], { cwd: root, maxBuffer: 64 << 20 });
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bin));
  return [...registry.files].filter((f) => f.proto.package === PACKAGE).sort((a, b) => a.proto.name.localeCompare(b.proto.name));
}

/** Source-info path of a descriptor (descriptor.proto field numbers). */
function pathOf(d: DescService | DescMethod | DescMessage | DescField | DescEnum): number[] {
  switch (d.kind) {
    case "service":
      return [6, d.file.services.indexOf(d)];
    case "rpc":
      return [...pathOf(d.parent), 2, d.parent.methods.indexOf(d)];
    case "message":
      return d.parent ? [...pathOf(d.parent), 3, d.parent.nestedMessages.indexOf(d)] : [4, d.file.messages.indexOf(d)];
    case "enum":
      return d.parent ? [...pathOf(d.parent), 4, d.parent.nestedEnums.indexOf(d)] : [5, d.file.enums.indexOf(d)];
    case "field":
      return [...pathOf(d.parent), 2, d.parent.proto.field.indexOf(d.proto)];
  }
}

function fileOf(d: DescService | DescMethod | DescMessage | DescField | DescEnum): DescFile {
  return d.kind === "rpc" ? d.parent.file : d.kind === "field" ? d.parent.file : d.file;
}

/** The leading comment, as paragraphs of plain text. */
function comment(d: DescService | DescMethod | DescMessage | DescField | DescEnum): string {
  const path = pathOf(d);
  const loc = fileOf(d).proto.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((v, i) => v === path[i]));
  const raw = loc?.leadingComments ?? "";
  return raw
    .split("\n")
    .map((l) => l.trim())
    .join("\n")
    .replace(/([^\n])\n(?!\n)/g, "$1 ")
    .trim();
}

/** Splits a method comment into its description, "Access:" note and "Errors:" text. */
function methodText(m: DescMethod): { description: string; accessNote: string; errors: string } {
  let text = comment(m);
  let errors = "";
  let accessNote = "";
  const e = text.search(/\bErrors:/);
  if (e >= 0) {
    errors = text.slice(e + "Errors:".length).trim();
    text = text.slice(0, e).trim();
  }
  const a = text.search(/\bAccess:/);
  if (a >= 0) {
    // What the option says is rendered from the option; keep only the comment's extra conditions.
    accessNote = text
      .slice(a + "Access:".length)
      .split(";")
      .slice(1)
      .map((s) => s.trim().replace(/\.$/, ""))
      .filter((s) => s && s !== "metered")
      .join("; ");
    text = text.slice(0, a).trim();
  }
  return { description: text, accessNote, errors };
}

const roleWord = (r: Role) => Role[r].toLowerCase();
const scopeWord = (s: Scope) => Scope[s].toLowerCase();

/** Who may call, from the `(formstate.v1.access)` option. */
export function whoMayCall(policy: AccessPolicy | undefined): string {
  if (!policy) return "nobody: the method has no `(formstate.v1.access)` option, so every call is denied";
  if (policy.public) return "anyone, signed in or not (`public: true`)";
  const parts = [
    policy.minRole === Role.UNSPECIFIED ? "no signed-in user (JWT)" : `users with role **${roleWord(policy.minRole)}** or above`,
    policy.scope === Scope.UNSPECIFIED ? "no API key" : `API keys with scope **${scopeWord(policy.scope)}** or above`,
  ];
  let text = parts.join("; ");
  if (policy.metered) text += "; **metered** (also callable by credentials limited to metered calls)";
  text += `; ${tenancyText(policy)}`;
  // Fields added to AccessPolicy later still show up, by name, until described here.
  for (const f of AccessPolicySchema.fields) {
    if (["public", "minRole", "scope", "metered", "tenancy", "resourceField", "relatedFields", "platformAnyProject"].includes(f.localName)) continue;
    const v = (policy as unknown as Record<string, unknown>)[f.localName];
    if (v === undefined || v === false || v === 0 || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    text += `; ${f.name}: \`${typeof v === "bigint" ? v.toString() : JSON.stringify(v)}\``;
  }
  return text;
}

/** Which project's resources the method reaches, from the access option's tenancy fields. */
export function tenancyText(policy: AccessPolicy): string {
  const fields = (paths: string[]) => paths.map((p) => `\`${p}\``).join(", ");
  switch (policy.tenancy) {
    case Tenancy.PROJECT: {
      let t = `tenancy **project**: ${fields([policy.resourceField])} must name the caller's project`;
      if (policy.relatedFields.length) t += ` (and so must ${fields(policy.relatedFields)} when set)`;
      if (policy.platformAnyProject) t += "; the platform project may name any project";
      return t;
    }
    case Tenancy.CATALOG:
      return `tenancy **catalog**${policy.resourceField ? ` (${fields([policy.resourceField])})` : ""}: public entries of any project, private ones only the owner's`;
    case Tenancy.NONE:
      return "tenancy **none** (names no project resource)";
    default:
      return "no tenancy declared: every call is denied";
  }
}

const anchor = (typeName: string) => typeName.replace(/\./g, "-").toLowerCase();
const link = (d: DescMessage | DescEnum) => (d.typeName.startsWith(`${PACKAGE}.`) ? `[${d.name}](#${anchor(d.typeName)})` : `\`${d.typeName}\``);

function fieldType(f: DescField): string {
  switch (f.fieldKind) {
    case "scalar":
      return `\`${scalarName(f)}\``;
    case "enum":
      return link(f.enum);
    case "message":
      return link(f.message);
    case "list":
      return `repeated ${f.listKind === "scalar" ? `\`${scalarName(f)}\`` : f.listKind === "enum" ? link(f.enum) : link(f.message)}`;
    case "map": {
      const v = f.mapKind === "scalar" ? `\`${scalarName(f)}\`` : f.mapKind === "enum" ? link(f.enum) : link(f.message);
      return `map<\`${scalarKeyName(f)}\`, ${v}>`;
    }
  }
}

const SCALARS: Record<number, string> = { 1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64" };
function scalarName(f: DescField): string {
  if (f.fieldKind === "map") return SCALARS[f.mapKind === "scalar" ? f.scalar : 9] ?? "scalar";
  return SCALARS[(f as { scalar?: number }).scalar ?? f.proto.type] ?? "scalar";
}
function scalarKeyName(f: DescField): string {
  return f.fieldKind === "map" ? (SCALARS[f.mapKey] ?? "string") : "string";
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n+/g, " ");

/** `{"string":{"maxLen":200}}` -> ["string.max_len: 200"]: the protovalidate rules, flattened. */
function flatten(value: unknown, prefix = ""): string[] {
  const text = (v: unknown) => (typeof v === "string" && v !== "" ? v : JSON.stringify(v));
  if (value === null || typeof value !== "object") return [`${prefix}: ${text(value)}`];
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== "object")) return [`${prefix}: ${value.map(text).join(", ")}`];
    return value.flatMap((v) => flatten(v, prefix));
  }
  return Object.entries(value).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}` : k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)));
}

/** A field's validation rules (violations are INVALID_ARGUMENT naming the field). */
function rulesOf(f: DescField): string {
  if (!hasOption(f, fieldRules)) return "";
  const json = toJson(FieldRulesSchema, getOption(f, fieldRules)) as Record<string, unknown>;
  // CEL rules are shown by their message, the text a caller gets back.
  const cel = (json.cel as { message?: string; id?: string }[] | undefined)?.map((c) => `${c.message ?? c.id}`) ?? [];
  delete json.cel;
  const optional = json.ignore === "IGNORE_IF_ZERO_VALUE";
  if (optional) delete json.ignore;
  return [...(optional ? ["empty skips these rules"] : []), ...flatten(json), ...cel].map((r) => `\`${r}\``).join("<br>");
}

function renderMessage(m: DescMessage, out: string[]): void {
  out.push(`<a id="${anchor(m.typeName)}"></a>`, "", `#### ${m.name}`, "");
  const c = comment(m);
  if (c) out.push(c, "");
  if (m.fields.length === 0) {
    out.push("No fields.", "");
  } else {
    out.push("| field | type | description | rules |", "|---|---|---|---|");
    for (const f of m.fields) {
      const oneof = f.oneof ? ` (oneof \`${f.oneof.name}\`)` : "";
      out.push(`| \`${f.name}\` | ${fieldType(f)}${oneof} | ${cell(comment(f))} | ${cell(rulesOf(f))} |`);
    }
    out.push("");
    const checks = m.oneofs.filter((o) => hasOption(o, oneofRules) && getOption(o, oneofRules).required).map((o) => `exactly one of ${o.fields.map((f) => `\`${f.name}\``).join(", ")}`);
    if (hasOption(m, messageRules)) checks.push(...getOption(m, messageRules).cel.map((c) => `\`${c.message || c.id}\``));
    if (checks.length) out.push(`Also checked: ${checks.join("; ")}.`, "");
  }
  for (const n of m.nestedMessages) if (!n.proto.options?.mapEntry) renderMessage(n, out);
  for (const e of m.nestedEnums) renderEnum(e, out);
}

function renderEnum(e: DescEnum, out: string[]): void {
  out.push(`<a id="${anchor(e.typeName)}"></a>`, "", `#### ${e.name} (enum)`, "");
  const c = comment(e);
  if (c) out.push(c, "");
  out.push("| value | number |", "|---|---|");
  for (const v of e.values) out.push(`| \`${v.name}\` | ${v.number} |`);
  out.push("");
}

function renderMethod(m: DescMethod, out: string[]): void {
  const { description, accessNote, errors } = methodText(m);
  const policy = hasOption(m, access) ? getOption(m, access) : undefined;
  const stream = m.methodKind === "unary" ? "" : ` (${m.methodKind.replace("_", " ")})`;
  out.push(`### ${m.name}${stream}`, "");
  out.push(`\`POST /${m.parent.typeName}/${m.name}\``, "");
  if (description) out.push(description, "");
  out.push(`- **Who may call:** ${whoMayCall(policy)}${accessNote ? `. ${accessNote[0].toUpperCase()}${accessNote.slice(1)}.` : ""}`);
  out.push(`- **Request:** ${link(m.input)} · **Response:** ${link(m.output)}`);
  const mentioned = CODES.filter((code) => new RegExp(`\\b${code}\\b`).test(comment(m)));
  if (errors) out.push(`- **Errors:** ${errors}`);
  else if (mentioned.length) out.push(`- **Errors:** ${mentioned.map((c) => `\`${c}\``).join(", ")} (see the description)`);
  else out.push("- **Errors:** only the ones every method may return (above)");
  out.push("");
}

export function render(files: DescFile[]): string {
  const out: string[] = [
    "# Formstate API reference (formstate.v1)",
    "",
    "<!-- Generated by scripts/generate-api-docs.ts from proto/ (comments and the (formstate.v1.access) option). Do not edit: run `npm run docs`. -->",
    "",
    "Every method is reachable on one port over gRPC, gRPC-Web and Connect (`POST /<service>/<method>` with JSON or binary bodies).",
    "See [buf-curl.md](buf-curl.md) for calling each service from a shell and [grpc-js.md](grpc-js.md) for `@grpc/grpc-js`.",
    "",
    "## Calling conventions",
    "",
    "- **Credentials:** `Authorization: Bearer <JWT or API key>` or `x-api-key: <API key>` (gRPC metadata uses the same names).",
    "- **Who may call** is declared on each method by the `(formstate.v1.access)` option and enforced from the descriptor:",
    "  a signed-in user (JWT) needs at least `min_role` in the project (roles: user < developer < admin); an API key needs at least",
    "  `scope` (read < write < admin); `public` methods need no credential; a method without the option is denied to everyone.",
    "- **Tenancy** is declared by the same option and enforced in one place, after validation (src/auth/tenancy.ts): `tenancy:",
    "  TENANCY_PROJECT` methods name a resource in `resource_field` (`accounts/{project}` or under it) and, optionally, more in",
    "  `related_fields`; every one must be of the caller's project, and another project's name is `NOT_FOUND` with the same",
    "  message whether it exists or not (only `platform_any_project` methods let the platform project name any project).",
    "  `TENANCY_CATALOG` methods (agents, models) see public entries of every project and private ones of the owner only; others'",
    "  private entries are `NOT_FOUND` exactly like absent ones. `TENANCY_NONE` methods name no project resource. A method that",
    "  declares no tenancy is denied. Models are published only under a provider namespace the project owns: its own project id,",
    "  or one assigned by the operator (`FORMSTATE_CATALOG_NAMESPACES=namespace=project,...`); well-known providers (`openai`,",
    "  `anthropic`, ...) are the platform project's unless assigned. Anyone else gets `PERMISSION_DENIED` (`NAMESPACE_NOT_OWNED`)",
    "  decided from the name alone, so it says nothing about which ids exist; reassigning a namespace takes it back (its new owner",
    "  and the platform then change every model in it). Agent ids are per project: `agents/{agent}` names the caller's own agent,",
    "  else the public one of that id (public ids are unique among public agents), else one shared with the caller; another",
    "  project's private agent is never named, so `CreateAgent` with its id succeeds as for a free id. Only going public with an",
    "  id another project's public agent holds answers `ALREADY_EXISTS` (public ids are public information).",
    "- **Errors every method may return:** `UNAUTHENTICATED` (missing, malformed, expired or revoked credential), `PERMISSION_DENIED`",
    "  (role or scope too low, a key's method allowlist), `INVALID_ARGUMENT` (a protovalidate rule in the proto, naming the field),",
    "  `RESOURCE_EXHAUSTED` with `RetryInfo` and `LimitExceeded` (`LIMIT_REASON_RATE_LIMITED`) when rate limited, and `NOT_FOUND` for",
    "  another project's resources. Typed details are in [errors.proto](#formstate-v1-limitexceeded).",
    "- **Payment required** (money, not speed): when the project's credits, a key's spend cap or a wallet token's budget cannot pay",
    "  for a metered call, the answer is `FAILED_PRECONDITION` with a [PaymentRequired](#formstate-v1-paymentrequired) detail (the",
    "  amount to add, the account, where to pay) and, for existing clients, `LimitExceeded` with the same reason; nothing is recorded.",
    "  Over plain HTTP (Connect unary, JSON or binary) the status is **402 Payment Required** instead of Connect's 400, with the",
    "  usual Connect error body and a `formstate-payment-required` header (`credits_exhausted` or `spend_cap`); Connect clients",
    "  read the code from the body, so they still see `failed_precondition` with the details. gRPC and gRPC-Web answer HTTP 200",
    "  with the status in trailers, as always. Rate limiting is never 402: it stays `RESOURCE_EXHAUSTED` / 429 with `RetryInfo`.",
    "- **Rate-limit headers** on every answer: `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`, and `retry-after` when limited.",
    "- **Money** is integer micro-USD (`int64`; 1 USD = 1,000,000).",
    "",
  ];
  const services = files.flatMap((f) => f.services);
  out.push("## Services", "");
  for (const s of services) out.push(`- [${s.name}](#${anchor(s.typeName)}): ${s.methods.map((m) => m.name).join(", ")}`);
  out.push("");
  for (const s of services) {
    out.push(`<a id="${anchor(s.typeName)}"></a>`, "", `## ${s.name}`, "");
    const c = comment(s);
    if (c) out.push(c, "");
    out.push(`Source: \`proto/${s.file.proto.name}\``, "");
    for (const m of s.methods) renderMethod(m, out);
  }
  out.push("## Messages and enums", "");
  for (const f of files) {
    if (f.messages.length === 0 && f.enums.length === 0) continue;
    out.push(`### \`${f.proto.name}\``, "");
    for (const m of f.messages) renderMessage(m, out);
    for (const e of f.enums) renderEnum(e, out);
  }
  return `${out.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd()}\n`;
}

function main(): void {
  const text = render(loadFiles());
  if (process.argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(OUT, "utf8");
    } catch {
      // missing counts as stale
    }
    if (current !== text) {
      console.error("docs/api.md is stale: run `npm run docs` (or `npm run generate`) and commit the result");
      process.exit(1);
    }
    console.log("docs/api.md is fresh");
    return;
  }
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
