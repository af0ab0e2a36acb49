/** AccountService over the wire: translates messages to the domain and back. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import {
  AccountSchema,
  type AccountService,
  MemberSchema,
  type Member,
  type Account,
} from "../../gen/formstate/v1/account_service_pb.js";
import { PlanTier } from "../../gen/formstate/v1/common_pb.js";
import { subscriptionStatusToWire } from "../wire/subscription-status.js";
import { callerOf, parseRole } from "../auth/principal.js";
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

function unimplemented(): never {
  throw new ConnectError("not implemented yet", Code.Unimplemented);
}

const updatableAccountFields = ["display_name", "billing_email"] as const;

/** The AccountService implementation over the accounts domain. */
export function accountService(accounts: Accounts): ServiceImpl<typeof AccountService> {
  return {
    async createAccount(req, ctx) {
      const a = req.account!;
      const view = await accounts.create(callerOf(ctx), { displayName: a.displayName, billingEmail: a.billingEmail }, req.requestId);
      return { account: toAccount(view) };
    },
    async getAccount(req, ctx) {
      return { account: toAccount(await accounts.get(callerOf(ctx), req.name)) };
    },
    async updateAccount(req, ctx) {
      const a = req.account!;
      if (a.name === "") throw invalidArgument("account.name", "is required");
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
    // Issue 9 (wallet tokens and sessions) is being built: these answer UNIMPLEMENTED until then.
    createWalletChallenge: unimplemented,
    bindWallet: unimplemented,
    listWalletBindings: unimplemented,
    deleteWalletBinding: unimplemented,
    listSessions: unimplemented,
    revokeSession: unimplemented,
    revokeAllSessions: unimplemented,
  };
}
