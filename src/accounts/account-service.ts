/** AccountService over the wire: translates messages to the domain and back. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import {
  AccountSchema,
  type AccountService,
  MemberSchema,
  type Member,
  type Account,
  type WalletBinding,
  WalletBindingSchema,
  WalletChallengeSchema,
} from "../../gen/formstate/v1/account_service_pb.js";
import type { Sessions } from "../sessions/sessions.js";
import { type BindingCaller, type BindingRow, type WalletBindings, bindingName } from "../wallets/wallet-bindings.js";
import { toSession } from "../sessions/session-wire.js";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import { wireEnvironment } from "../ledger/sandbox.js";
import { subscriptionStatusToWire } from "../wire/subscription-status.js";
import { type Principal, callerOf, parseRole } from "../auth/principal.js";
import { childOf, projectOf } from "../auth/tenancy.js";

type Caller = Exclude<Principal, { kind: "anonymous" }>;
import { invalidArgument } from "../errors.js";
import { fieldMaskPaths } from "../wire/field-mask.js";
import { type AccountChanges, type AccountView, type Accounts, accountName, memberName } from "./accounts.js";
import type { MemberRow } from "./account-repository.js";


function toAccount(v: AccountView): Account {
  const { row, plan } = v;
  return create(AccountSchema, {
    name: accountName(row.project_id),
    projectId: row.project_id,
    displayName: row.display_name,
    billingEmail: row.billing_email,
    planTier: plan.tier ?? PlanTier.UNSPECIFIED,
    subscriptionStatus: subscriptionStatusToWire(row.subscription_status),
    creditBalanceMicros: BigInt(row.credit_balance_micros),
    testCreditBalanceMicros: BigInt(row.test_credit_balance_micros),
    environment: wireEnvironment(row.environment),
    agentSlots: { used: BigInt(v.agentSlotsUsed), limit: BigInt(plan.agentSlots ?? 0), unlimited: plan.agentSlots === null },
    apiKeys: { used: BigInt(v.apiKeysUsed), limit: BigInt(plan.apiKeyLimit ?? 0), unlimited: plan.apiKeyLimit === null },
    createTime: timestampFromMs(row.create_time),
    updateTime: timestampFromMs(row.update_time),
  });
}

function toMember(row: MemberRow): Member {
  return create(MemberSchema, {
    name: memberName(row.project_id, row.user_id),
    userId: row.user_id,
    role: parseRole(row.role) ?? Role.UNSPECIFIED,
    createTime: timestampFromMs(row.create_time),
    updateTime: timestampFromMs(row.update_time),
  });
}

/** A wallet acting through its binding binds and removes as the user behind it. */
function bindingCaller(caller: Caller): BindingCaller {
  return { projectId: caller.projectId, role: caller.role, userId: caller.kind === "user" && caller.wallet ? caller.wallet.userId : caller.subject };
}

function toBinding(row: BindingRow): WalletBinding {
  return create(WalletBindingSchema, {
    name: bindingName(row.project_id, row.binding_id),
    accountId: row.account_id,
    chainId: row.chain_id,
    userId: row.user_id,
    role: parseRole(row.role) ?? Role.UNSPECIFIED,
    createTime: timestampFromMs(row.create_time),
  });
}

const updatableAccountFields = ["display_name", "billing_email"] as const;

/** The AccountService implementation over the accounts domain. */
export function accountService(accounts: Accounts, wallets: WalletBindings, sessions: Sessions): ServiceImpl<typeof AccountService> {
  return {
    async createAccount(req, ctx) {
      const a = req.account!;
      const environment = a.environment === KeyEnvironment.TEST ? "test" : "live";
      const view = await accounts.create(callerOf(ctx), { displayName: a.displayName, billingEmail: a.billingEmail }, req.requestId, environment);
      return { account: toAccount(view) };
    },
    async getAccount(req, ctx) {
      return { account: toAccount(await accounts.get(callerOf(ctx), req.name)) };
    },
    async updateAccount(req, ctx) {
      const a = req.account!;
      if (a.name === "") throw invalidArgument("account.name", "is required");
      if (req.updateMask?.paths.includes("environment")) {
        throw invalidArgument("update_mask", "environment is fixed when the account is created: a test-mode project stays in test mode; use another project for live (docs/test-mode.md)");
      }
      const changes: AccountChanges = {};
      for (const path of fieldMaskPaths(req.updateMask, updatableAccountFields)) {
        if (path === "display_name") changes.displayName = a.displayName;
        if (path === "billing_email") changes.billingEmail = a.billingEmail;
      }
      return { account: toAccount(await accounts.update(callerOf(ctx), a.name, changes)) };
    },
    async listMembers(req, ctx) {
      const page = await accounts.listMembers(callerOf(ctx), req.parent, req.pageSize, req.pageToken);
      return { members: page.items.map(toMember), nextPageToken: page.nextPageToken };
    },
    async addMember(req, ctx) {
      const m = req.member!;
      return { member: toMember(await accounts.addMember(callerOf(ctx), req.parent, m.userId, m.role)) };
    },
    async updateMember(req, ctx) {
      const m = req.member!;
      if (m.name === "") throw invalidArgument("member.name", "is required");
      fieldMaskPaths(req.updateMask, ["role"] as const);
      return { member: toMember(await accounts.updateMemberRole(callerOf(ctx), m.name, m.role)) };
    },
    async removeMember(req, ctx) {
      await accounts.removeMember(callerOf(ctx), req.name);
      return {};
    },
    async createWalletChallenge(req, ctx) {
      const c = await wallets.challenge(bindingCaller(callerOf(ctx)), projectOf(ctx), req.accountId);
      return { challenge: create(WalletChallengeSchema, { nonce: c.nonce, message: c.message, expireTime: timestampFromMs(c.expiresAt) }) };
    },
    async bindWallet(req, ctx) {
      return { binding: toBinding(await wallets.bind(bindingCaller(callerOf(ctx)), projectOf(ctx), req.accountId, req.nonce, req.signature)) };
    },
    async listWalletBindings(req, ctx) {
      const page = await wallets.list(bindingCaller(callerOf(ctx)), projectOf(ctx), req.pageSize, req.pageToken);
      return { bindings: page.items.map(toBinding), nextPageToken: page.nextPageToken };
    },
    async deleteWalletBinding(req, ctx) {
      await wallets.remove(bindingCaller(callerOf(ctx)), childOf(ctx, "wallets"));
      return {};
    },
    async listSessions(req, ctx) {
      const page = await sessions.list(callerOf(ctx), projectOf(ctx), req.pageSize, req.pageToken, req.showInactive);
      return { sessions: page.items.map(toSession), nextPageToken: page.nextPageToken };
    },
    async revokeSession(req, ctx) {
      const [view] = await sessions.withBudgets([await sessions.revoke(callerOf(ctx), childOf(ctx, "sessions"))]);
      return { session: toSession(view) };
    },
    async revokeAllSessions(req, ctx) {
      const r = await sessions.revokeAll(callerOf(ctx), projectOf(ctx), req.subject);
      return { revokedCount: r.revoked, revokeTime: timestampFromMs(r.revokeTime) };
    },
  };
}
