/**
 * Model allowlists: `provider/model` exactly, `provider/*`, or a prefix glob
 * `provider/name*`. An empty list allows every model.
 */
import { modelIdOf } from "../names/names.js";

/** The model id (`openai/gpt-4o`) from a model resource name or id. */
export function modelId(nameOrId: string): string {
  return modelIdOf(nameOrId);
}

function matches(pattern: string, model: string): boolean {
  return pattern.endsWith("*") ? model.startsWith(pattern.slice(0, -1)) : model === pattern;
}

/** Whether a model may be used under the patterns. */
export function modelAllowed(patterns: readonly string[], model: string): boolean {
  const id = modelId(model);
  return patterns.length === 0 || patterns.some((p) => matches(p, id));
}

/** Whether every model `child` admits is admitted by one of `parents` (a child never widens its parent). */
export function patternCovered(parents: readonly string[], child: string): boolean {
  if (parents.length === 0) return true;
  return parents.some((p) => {
    if (!p.endsWith("*")) return p === child;
    const prefix = p.slice(0, -1);
    return child.startsWith(prefix);
  });
}
