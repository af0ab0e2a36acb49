/**
 * Provider namespaces of the model catalog (`openai` in `models/openai/gpt-4o`).
 * A project publishes only in a namespace it owns: the one named like its
 * project id, or one the operator assigned it (FORMSTATE_CATALOG_NAMESPACES,
 * `namespace=project,...`, a verified owner). Well-known providers' namespaces
 * are the platform project's unless assigned. The platform project may use
 * any namespace, and reassigning one (or removing the assignment of a
 * well-known one) takes it back: only the new owner and the platform then
 * change the models in it.
 *
 * The decision reads the name and the configuration only, never the stored
 * models, so refusing a namespace says nothing about which ids exist in it.
 */

/** Provider namespaces reserved for the platform unless FORMSTATE_CATALOG_NAMESPACES assigns them. */
export const wellKnownProviders = ["openai", "anthropic", "google", "meta", "mistral", "cohere", "xai", "deepseek", "amazon", "microsoft", "nvidia", "perplexity"] as const;

const NAMESPACE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const PROJECT = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Parses `namespace=project,...`; problems name each bad entry. */
export function parseCatalogNamespaces(raw: string | undefined): { assigned: Map<string, string>; problems: string[] } {
  const assigned = new Map<string, string>();
  const problems: string[] = [];
  for (const entry of (raw ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const [ns, project, extra] = entry.split("=").map((s) => s.trim());
    if (extra !== undefined || !ns || !project || !NAMESPACE.test(ns) || !PROJECT.test(project)) {
      problems.push(`FORMSTATE_CATALOG_NAMESPACES entry ${JSON.stringify(entry)} must be namespace=project`);
    } else if (assigned.has(ns)) {
      problems.push(`FORMSTATE_CATALOG_NAMESPACES assigns ${ns} twice`);
    } else assigned.set(ns, project);
  }
  return { assigned, problems };
}

/** Who owns which provider namespace. */
export class CatalogNamespaces {
  constructor(
    private readonly platformProject: string,
    private readonly assigned: ReadonlyMap<string, string> = new Map(),
  ) {}

  /** The project a namespace is reserved for, or undefined when only the project of that id owns it. */
  reservedFor(namespace: string): string | undefined {
    return this.assigned.get(namespace) ?? ((wellKnownProviders as readonly string[]).includes(namespace) ? this.platformProject : undefined);
  }

  /** Whether the project may publish and manage models in the namespace. */
  owns(projectId: string, namespace: string): boolean {
    if (projectId === this.platformProject) return true;
    const reserved = this.reservedFor(namespace);
    return reserved === undefined ? namespace === projectId : reserved === projectId;
  }
}

/** The seeded demo catalog's namespace (src/seed/demo-catalog.ts), the dev project's in development unless assigned. */
export const DEMO_NAMESPACE = "demo-lab";

/** The assignments in force: the configured ones, plus the demo namespace for the dev project in development. */
export function catalogNamespacesOf(config: { mode: string; devProject: string; catalogNamespaces: ReadonlyMap<string, string> }): Map<string, string> {
  const assigned = new Map(config.catalogNamespaces);
  if (config.mode === "development" && !assigned.has(DEMO_NAMESPACE)) assigned.set(DEMO_NAMESPACE, config.devProject);
  return assigned;
}
