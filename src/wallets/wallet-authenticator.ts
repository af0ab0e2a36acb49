/**
 * Turns a wallet-signed token into a principal: signature and claims
 * (cached per token, expiry rechecked on every call), the wallet's binding,
 * the binder's current role, the token's session (revocation, session limit)
 * and its budget.
 */
import { AuthError } from "../auth/auth-error.js";
import type { UserPrincipal } from "../auth/principal.js";
import type { Clock } from "../clock.js";
import type { Sessions } from "../sessions/sessions.js";
import { sessionIdOf } from "../sessions/sessions.js";
import { budgetIdOf } from "./wallet-budgets.js";
import { type WalletBindings, bindingRole } from "./wallet-bindings.js";
import { type WalletToken, verifyWalletToken } from "./wallet-token.js";

export interface WalletAuthenticatorDeps {
  bindings: WalletBindings;
  sessions: Sessions;
  clock: Clock;
  memberRole(projectId: string, userId: string): Promise<string | undefined>;
}

const MAX_CACHED = 10_000;

export function createWalletAuthenticator(deps: WalletAuthenticatorDeps): (token: string) => Promise<UserPrincipal> {
  // Signature checks cost ~0.1-1 ms (secp256k1 recovery is the slow one); a token is verified once.
  const verified = new Map<string, WalletToken>();
  return async (token) => {
    const now = deps.clock.now();
    let t = verified.get(token);
    if (t && t.expiresAt !== undefined && t.expiresAt * 1000 <= now) {
      verified.delete(token);
      t = undefined;
    }
    if (!t) {
      t = verifyWalletToken(token, now);
      if (verified.size >= MAX_CACHED) verified.delete(verified.keys().next().value!);
      verified.set(token, t);
    }
    const accountId = t.account.accountId;
    const binding = await deps.bindings.resolve(accountId);
    if (!binding) throw new AuthError("WALLET_NOT_BOUND", `wallet ${accountId} is not bound to an account: bind it with AccountService.BindWallet`);
    const sessionId = sessionIdOf("wallet", accountId, t.sessionKey);
    const budget = t.budget && { id: budgetIdOf(t.budget, accountId, sessionId), projectId: binding.project_id, claim: t.budget };
    await deps.sessions.admit({
      projectId: binding.project_id,
      kind: "wallet",
      subject: accountId,
      sessionId,
      issuedAtMs: t.issuedAt * 1000,
      expireTime: t.expiresAt === undefined ? undefined : t.expiresAt * 1000,
      budget,
    });
    return {
      kind: "user",
      subject: accountId,
      projectId: binding.project_id,
      role: bindingRole(binding, await deps.memberRole(binding.project_id, binding.user_id)),
      roleSource: "wallet",
      sessionId,
      expiresAt: t.expiresAt ?? 0,
      wallet: { accountId, userId: binding.user_id, scope: t.scope, models: t.models, budget },
    };
  };
}
