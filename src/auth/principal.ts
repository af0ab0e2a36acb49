/**
 * Who is calling: resolved once per call by the auth interceptor and read by
 * handlers from the call's context values, never from headers.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { Role, Scope } from "../../gen/formstate/v1/access_pb.js";
import { unauthenticated } from "../errors.js";
import type { BudgetRef } from "../wallets/wallet-budgets.js";

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
  /** Where the role came from: the token's role claim, the members table, the default, or a wallet binding. */
  roleSource: "token" | "member" | "default" | "wallet";
  sessionId?: string;
  /** Epoch seconds; 0 when the token has no expiry (wallet api tokens may omit exp). */
  expiresAt: number;
  /** Set when the credential is a wallet-signed token; `subject` is then the wallet's CAIP-10 id. */
  wallet?: WalletGrant;
  /** True in a test-mode project: the user meters the sandbox ledger and moves no real money (docs/test-mode.md). */
  testProject?: boolean;
}

/** What a wallet-signed token grants, from its verified claims and the wallet's binding. */
export interface WalletGrant {
  accountId: string;
  /** The user who bound the wallet: the wallet acts as this user. */
  userId: string;
  /** admin: manage the caller's own account, sessions and keys; api: metered methods only. */
  scope: "admin" | "api";
  /** Model patterns the token may meter; empty means any. */
  models: string[];
  budget?: BudgetRef;
}

/** A program calling with a Formstate API key (standard or scoped). */
export interface ApiKeyPrincipal {
  kind: "api_key";
  keyId: string;
  /** The key's resource name, used as the subject in audit and attribution. */
  subject: string;
  projectId: string;
  /** The key's highest scope (scopes are ordered read < write < admin). */
  scope: Scope;
  /** The role the scope stands for, for domain rules written in roles. */
  role: Role;
  keyKind: "standard" | "scoped";
  /** For scoped keys: the only methods it may call (`/pkg.Service/Method`). */
  allowedMethods: string[];
  /** Model patterns; empty means any. */
  allowedModels: string[];
  rateLimit?: { requestsPerSecond: number; burst: number };
  parentKeyId?: string;
  /** The key's environment: `test` keys (`fs_test_`) meter against the sandbox ledger (docs/test-mode.md). */
  environment: "live" | "test";
  /** True in a test-mode project (whose keys are all `fs_test_`). */
  testProject?: boolean;
}

export type Principal = AnonymousPrincipal | UserPrincipal | ApiKeyPrincipal;

/** The context key the auth interceptor sets. */
/**
 * Whether the caller may use the platform project's platform-wide powers
 * (credits for any project, platform-wide models): its admins and developers
 * signed in as people or keys, never through a wallet token ("never global").
 */
export function actsForPlatform(caller: { projectId: string; wallet?: unknown }, platformProject: string): boolean {
  return caller.projectId === platformProject && !caller.wallet;
}

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

/** The highest key scope a role may grant: user -> read, developer -> write, admin -> admin. */
export function scopeForRole(role: Role): Scope {
  return role === Role.ADMIN ? Scope.ADMIN : role === Role.DEVELOPER ? Scope.WRITE : role === Role.USER ? Scope.READ : Scope.UNSPECIFIED;
}

/** The role a key scope stands for in domain rules. */
export function roleForScope(scope: Scope): Role {
  return scope === Scope.ADMIN ? Role.ADMIN : scope === Scope.WRITE ? Role.DEVELOPER : scope === Scope.READ ? Role.USER : Role.UNSPECIFIED;
}

export const scopeNames: Record<string, Scope> = { read: Scope.READ, write: Scope.WRITE, admin: Scope.ADMIN };

export function scopeName(scope: Scope): string {
  return scope === Scope.ADMIN ? "admin" : scope === Scope.WRITE ? "write" : scope === Scope.READ ? "read" : "none";
}

export { Role, Scope };
