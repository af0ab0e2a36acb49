/**
 * Who is calling: resolved once per call by the auth interceptor and read by
 * handlers from the call's context values, never from headers.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { unauthenticated } from "../errors.js";

/** No credential was presented (only public methods get this far). */
export interface AnonymousPrincipal {
  kind: "anonymous";
}

/** A user signed in with an identity provider's JWT. */
export interface UserPrincipal {
  kind: "user";
  subject: string;
  projectId: string;
  role: Role;
  /** Where the role came from: the token's role claim, the members table, or the default. */
  roleSource: "token" | "member" | "default";
  sessionId?: string;
  expiresAt: number;
}

export type Principal = AnonymousPrincipal | UserPrincipal;

/** The context key the auth interceptor sets. */
export const principalKey = createContextKey<Principal>({ kind: "anonymous" }, { description: "principal" });

/** The caller, or UNAUTHENTICATED when the method needs one and there is none. */
export function callerOf(ctx: HandlerContext): Exclude<Principal, AnonymousPrincipal> {
  const p = ctx.values.get(principalKey);
  if (p.kind === "anonymous") throw unauthenticated("this method needs a credential");
  return p;
}

export const roleNames: Record<string, Role> = {
  user: Role.USER,
  developer: Role.DEVELOPER,
  admin: Role.ADMIN,
};

/** The stored name of a role: user, developer, admin. */
export function roleName(role: Role): string {
  switch (role) {
    case Role.ADMIN:
      return "admin";
    case Role.DEVELOPER:
      return "developer";
    case Role.USER:
      return "user";
    default:
      return "unspecified";
  }
}

export function parseRole(name: string | undefined): Role | undefined {
  return name === undefined ? undefined : roleNames[name];
}

export { Role, Scope };
