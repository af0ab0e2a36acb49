/**
 * Project scoping, decided here for every method: a caller reaches only its
 * own project's resources. Another project's name is NOT_FOUND with the same
 * message whether it exists or not, so a caller learns nothing of other tenants.
 */
import { invalidArgument, notFound } from "../errors.js";

/** The project of `accounts/{project}`, if it is the caller's. */
export function ownProject(caller: { projectId: string }, name: string): string {
  const projectId = name.startsWith("accounts/") ? name.slice("accounts/".length) : "";
  if (projectId !== caller.projectId) throw notFound(`account "${name}"`);
  return projectId;
}

/**
 * The id in `accounts/{project}/{collection}/{id}`, if the project is the
 * caller's; `what` names the resource in messages ("API key", "member").
 */
export function ownChild(caller: { projectId: string }, name: string, collection: string, what: string): { projectId: string; id: string } {
  const prefix = /^accounts\/([^/]+)\//.exec(name);
  const rest = prefix ? name.slice(prefix[0].length) : "";
  if (!prefix || !rest.startsWith(`${collection}/`) || rest.length === collection.length + 1) {
    throw invalidArgument("name", `must be accounts/{project}/${collection}/{id}`);
  }
  if (prefix[1] !== caller.projectId) throw notFound(`${what} "${name}"`);
  return { projectId: prefix[1], id: rest.slice(collection.length + 1) };
}
