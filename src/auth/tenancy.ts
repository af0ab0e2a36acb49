/**
 * Tenancy from the contract: every method declares in its `(access)` option
 * which project's resources a request reaches (`tenancy`) and which request
 * field names them (`resource_field`, `related_fields`). This interceptor,
 * after validation, reads the descriptor, parses the named fields with the
 * names module and refuses cross-project access here, in one place:
 *
 * - another project's name is NOT_FOUND, with the same message whether it
 *   exists or not, so a caller learns nothing of other tenants;
 * - a method that declares no tenancy is denied (fail closed).
 *
 * Handlers then take the checked project from `projectOf(ctx)` (or
 * `childOf(ctx, collection)`) instead of parsing names themselves.
 */
import type { DescField, DescMessage, DescMethod } from "@bufbuild/protobuf";
import { type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import { type HandlerContext, type Interceptor, createContextKey } from "@connectrpc/connect";
import { Tenancy } from "../../gen/formstate/v1/access_pb.js";
import { invalidArgument, notFound, permissionDenied } from "../errors.js";
import { type Collection, type ResourceName, collectionNoun, parseName } from "../names/names.js";
import { policyOf } from "./access-policy.js";
import { type Principal, actsForPlatform, principalKey } from "./principal.js";

declare const checked: unique symbol;
/** A project id the tenancy interceptor has checked the caller may reach. */
export type CheckedProject = string & { readonly [checked]: true };

/** What the interceptor established for a call. */
export interface CheckedScope {
  project: CheckedProject;
  /** The parsed `resource_field`, when the method declares one and the request set it. */
  resource?: ResourceName;
}

const scopeKey = createContextKey<CheckedScope | undefined>(undefined, { description: "tenancy" });

/** A method's declared tenancy, read once from its descriptor. */
export interface TenancySpec {
  tenancy: Tenancy;
  resourceField: string;
  relatedFields: string[];
  platformAnyProject: boolean;
}

const specs = new WeakMap<DescMethod, TenancySpec | null>();

/** The method's tenancy, or undefined when it declares none (the call is then denied). */
export function tenancyOf(method: DescMethod): TenancySpec | undefined {
  let spec = specs.get(method);
  if (spec === undefined) {
    const p = policyOf(method);
    spec = p && p.tenancy !== Tenancy.UNSPECIFIED ? { tenancy: p.tenancy, resourceField: p.resourceField, relatedFields: [...p.relatedFields], platformAnyProject: p.platformAnyProject } : null;
    specs.set(method, spec);
  }
  return spec ?? undefined;
}

/**
 * Problems with a method's declaration (a resource field that is not a string
 * field of the request, PROJECT without a field): empty when it is sound.
 * The descriptor walk test runs this over every method.
 */
export function declarationProblems(method: DescMethod): string[] {
  const spec = tenancyOf(method);
  if (!spec) return ["declares no tenancy"];
  const problems: string[] = [];
  if (spec.tenancy === Tenancy.PROJECT && !spec.resourceField) problems.push("TENANCY_PROJECT needs resource_field");
  if (spec.tenancy === Tenancy.NONE && (spec.resourceField || spec.relatedFields.length)) problems.push("TENANCY_NONE names no fields");
  for (const path of [spec.resourceField, ...spec.relatedFields].filter(Boolean)) {
    if (!stringFieldAt(method.input, path)) problems.push(`${path} is not a string field of ${method.input.typeName}`);
  }
  return problems;
}

function stringFieldAt(desc: DescMessage, path: string): boolean {
  const parts = path.split(".");
  let d: DescMessage | undefined = desc;
  for (let i = 0; i < parts.length; i++) {
    const f: DescField | undefined = d?.fields.find((x) => x.name === parts[i]);
    if (!f) return false;
    if (i === parts.length - 1) return f.fieldKind === "scalar" && f.scalar === 9; // ScalarType.STRING
    d = f.fieldKind === "message" ? f.message : undefined;
  }
  return false;
}

/** The string at a dotted field path of a request ("" when unset). */
function read(msg: ReflectMessage, path: string): string {
  let r = msg;
  const parts = path.split(".");
  for (let i = 0; i < parts.length; i++) {
    const f = r.fields.find((x) => x.name === parts[i]);
    if (!f || !r.isSet(f)) return "";
    if (i === parts.length - 1) return f.fieldKind === "scalar" && typeof r.get(f) === "string" ? (r.get(f) as string) : "";
    if (f.fieldKind !== "message") return "";
    r = r.get(f) as ReflectMessage;
  }
  return "";
}

/** How messages name a resource: `API key "accounts/b/apiKeys/k"`. */
function described(n: ResourceName, value: string): string {
  switch (n.kind) {
    case "account":
      return `account "${value}"`;
    case "subscription":
      return `subscription "${value}"`;
    case "child":
      return `${collectionNoun[n.collection]} "${value}"`;
    case "agent":
      return `agent "${value}"`;
    case "model":
      return `model "${value}"`;
  }
}

const methodNameOf = (method: DescMethod) => `${method.parent.typeName}/${method.name}`;

const projectOfResource = (n: ResourceName | undefined) => (n && (n.kind === "account" || n.kind === "subscription" || n.kind === "child") ? n.project : undefined);

/**
 * Decides a call's tenancy: the checked scope, or the error. Pure: the
 * interceptor and the walk test both call it.
 */
export function checkTenancy(method: DescMethod, messageOrRead: ReflectMessage | (() => ReflectMessage), principal: Principal, platformProject: string): CheckedScope | undefined {
  const spec = tenancyOf(method);
  if (!spec) throw permissionDenied(`${methodNameOf(method)} declares no tenancy and is denied`, "NO_TENANCY");
  if (principal.kind === "anonymous") {
    if (spec.tenancy === Tenancy.NONE) return undefined;
    throw permissionDenied(`${methodNameOf(method)} needs a credential`);
  }
  const own = principal.projectId as CheckedProject;
  if (spec.tenancy === Tenancy.NONE) return { project: own };
  // Reflected only for the tenancies that read the request (a reflection per call is two Maps).
  const message = typeof messageOrRead === "function" ? messageOrRead() : messageOrRead;
  switch (spec.tenancy) {
    case Tenancy.CATALOG: {
      const value = spec.resourceField ? read(message, spec.resourceField) : "";
      if (!value) return { project: own };
      const resource = parseName(value);
      if (resource?.kind !== "agent" && resource?.kind !== "model") throw invalidArgument(spec.resourceField, "must be agents/{agent} or models/{provider}/{model}");
      return { project: own, resource };
    }
    case Tenancy.PROJECT: {
      const value = read(message, spec.resourceField);
      if (!value) throw invalidArgument(spec.resourceField, "is required");
      const resource = parseName(value);
      const project = projectOfResource(resource);
      if (!resource || project === undefined) throw invalidArgument(spec.resourceField, "must be accounts/{project} or a resource under it");
      const platformReach = spec.platformAnyProject && actsForPlatform(principal, platformProject);
      if (project !== principal.projectId && !platformReach) throw notFound(described(resource, value));
      for (const path of spec.relatedFields) {
        const related = read(message, path);
        if (!related) continue;
        const r = parseName(related);
        const rp = projectOfResource(r);
        if (!r || rp === undefined) throw invalidArgument(path, "must be a resource under accounts/{project}");
        if (rp !== project) throw notFound(described(r, related));
      }
      return { project: project as CheckedProject, resource };
    }
    default:
      throw permissionDenied(`${methodNameOf(method)} declares an unknown tenancy and is denied`, "NO_TENANCY");
  }
}

/** The tenancy interceptor: after validation, before the handler. */
export function createTenancyInterceptor(platformProject: string): Interceptor {
  return (next) => async (req) => {
    if (req.stream) {
      // Client and bidi streams (server reflection) carry no project resources: only TENANCY_NONE ones are served.
      if (req.method.methodKind !== "server_streaming") {
        if (tenancyOf(req.method)?.tenancy !== Tenancy.NONE) throw permissionDenied(`${req.method.parent.typeName}/${req.method.name} is a stream: only TENANCY_NONE streams are served`, "NO_TENANCY");
        return next(req);
      }
      // A server stream has one request message: read it, check it like a unary request, hand it on.
      const it = req.message[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done) throw invalidArgument("request", "a server-streaming call needs its request message");
      const scope = checkTenancy(req.method, reflect(req.method.input, first.value), req.contextValues.get(principalKey), platformProject);
      req.contextValues.set(scopeKey, scope);
      return next({ ...req, message: prepend(first.value, it) });
    }
    const scope = checkTenancy(req.method, () => reflect(req.method.input, req.message), req.contextValues.get(principalKey), platformProject);
    req.contextValues.set(scopeKey, scope);
    return next(req);
  };
}

/** `first`, then the rest of the iterator (Connect itself then refuses a second request message). */
async function* prepend<T>(first: T, rest: AsyncIterator<T>): AsyncGenerator<T> {
  yield first;
  for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value;
}

function scopeOf(ctx: HandlerContext): CheckedScope {
  const scope = ctx.values.get(scopeKey);
  // Only a handler on a route without the interceptor gets here: fail closed.
  if (!scope) throw permissionDenied("no checked project for this call", "NO_TENANCY");
  return scope;
}

/** The project the call reaches, as checked by the tenancy interceptor. */
export function projectOf(ctx: HandlerContext): CheckedProject {
  return scopeOf(ctx).project;
}

/** A resource under a checked project: `accounts/{project}/{collection}/{id}`. */
export interface ChildRef {
  project: CheckedProject;
  id: string;
}

/** The checked resource of a `accounts/{project}/{collection}/{id}` resource field. */
export function childOf(ctx: HandlerContext, collection: Collection): ChildRef {
  const { project, resource } = scopeOf(ctx);
  if (resource?.kind !== "child" || resource.collection !== collection) throw invalidArgument("name", `must be accounts/{project}/${collection}/{id}`);
  return { project, id: resource.id };
}

/**
 * For domain code that still receives names (keys, accounts, metering): the
 * project of a name whose method's tenancy the interceptor has already
 * checked, or operator code (CLI, seeding) that names its own project.
 */
export function checkedProjectIn(name: string): CheckedProject {
  const project = projectOfResource(parseName(name));
  if (project === undefined) throw invalidArgument("name", "must be accounts/{project} or a resource under it");
  return project as CheckedProject;
}

/** The project and id of a checked `accounts/{project}/{collection}/{id}` name (see `checkedProjectIn`). */
export function checkedChildIn(name: string, collection: Collection): { project: CheckedProject; id: string } {
  const n = parseName(name);
  if (n?.kind !== "child" || n.collection !== collection) throw invalidArgument("name", `must be accounts/{project}/${collection}/{id}`);
  return { project: n.project as CheckedProject, id: n.id };
}

/** Operator code outside RPCs (CLI, seeding, tests) acting on a project it names. */
export function operatorProject(projectId: string): CheckedProject {
  return projectId as CheckedProject;
}
