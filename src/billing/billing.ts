/**
 * Billing without Stripe's network: plans on offer, the subscription as the
 * account records it, credit grants by operators, and the ledger read back.
 * Stripe checkout, portal and webhooks are a separate module (not built yet).
 */
import type { Caller } from "../accounts/accounts.js";
import { Role } from "../../gen/formstate/v1/access_pb.js";
import type { Clock } from "../clock.js";
import type { Database } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { ownProject } from "../auth/project-scope.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import * as ledger from "../ledger/ledger.js";
import type { Plans } from "../plans/plans.js";
import { monthOf } from "../usage/period.js";

export interface BillingDeps {
  database: Database;
  plans: Plans;
  clock: Clock;
  /** Admins of this project operate the platform: they may grant credits to any account. */
  platformProject: string;
  /** In development, project admins may grant their own account credits (for trying things out). */
  selfGrant: boolean;
  stripeConfigured: boolean;
  invalidatePlan(projectId: string): void;
}

export class Billing {
  constructor(private readonly deps: BillingDeps) {}

  plans() {
    return [...this.deps.plans.all].sort((a, b) => a.monthlyPriceMicros - b.monthlyPriceMicros);
  }

  async subscription(caller: Caller, name: string) {
    const projectId = this.ownProject(caller, name.replace(/\/subscription$/, ""));
    const row = await this.deps.database.db.selectFrom("account").selectAll().where("project_id", "=", projectId).executeTakeFirst();
    if (!row) throw notFound(`subscription "${name}"`);
    const period = monthOf(this.deps.clock.now());
    return { row, plan: this.deps.plans.byId(row.plan_tier), period };
  }

  /** An operator's grant, idempotent by request id (a retry books nothing more). */
  async addCredits(caller: Caller, parent: string, amountMicros: number, reason: string, requestId: string) {
    const target = parent.slice("accounts/".length);
    const platformAdmin = caller.projectId === this.deps.platformProject && caller.role === Role.ADMIN;
    if (!platformAdmin) {
      if (target !== caller.projectId) throw notFound(`account "${parent}"`);
      if (!this.deps.selfGrant) {
        throw permissionDenied(`only admins of the platform project "${this.deps.platformProject}" grant credits`, "PLATFORM_ADMIN_REQUIRED");
      }
    }
    return this.deps.database.transaction(async (tx) => {
      const account = await tx.selectFrom("account").select("project_id").where("project_id", "=", target).executeTakeFirst();
      if (!account) throw notFound(`account "${parent}"`);
      const { row, duplicate } = await ledger.book(
        tx,
        { projectId: target, kind: "grant", amountMicros, idempotencyKey: `grant:${requestId}`, description: reason, actor: caller.subject },
        this.deps.clock.now(),
      );
      if (duplicate && (row.amount_micros !== amountMicros || row.kind !== "grant")) {
        throw invalidArgument("request_id", "was already used for a different grant");
      }
      return { row, balance: await ledger.balanceOf(tx, target) };
    });
  }

  async transactions(caller: Caller, parent: string, filter: ledger.LedgerFilter, size: number, token: string) {
    const projectId = this.ownProject(caller, parent);
    const n = pageSize(size);
    const before = decodePageToken(token, ["number"]) as [number] | undefined;
    const rows = await ledger.listEntries(this.deps.database.db, projectId, filter, n + 1, before?.[0]);
    return pageOf(rows, n, (r) => [r.seq]);
  }

  /** Stripe-backed methods without Stripe keys: a clear precondition failure. */
  requireStripe(): void {
    if (!this.deps.stripeConfigured) {
      throw failedPrecondition("billing is not configured: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET", "BILLING_NOT_CONFIGURED");
    }
  }

  private ownProject(caller: Caller, name: string): string {
    return ownProject(caller, name);
  }
}
