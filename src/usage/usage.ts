/**
 * Metering: every model call and agent operation is priced when recorded and
 * paid from the project's credits in the same transaction as the record,
 * its hourly rollup and the key's spend. Holds (authorizations) reserve
 * credits before work starts so concurrent calls cannot overspend.
 */
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { Selectable } from "kysely";
import { LimitReason, UpgradeOptionSchema } from "../../gen/formstate/v1/errors_pb.js";
import { paymentRequired } from "../billing/payment-required.js";
import type { ApiKeyPrincipal, UserPrincipal } from "../auth/principal.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { type GroupCommit, type GroupCommitOptions, type Outcome, createGroupCommit, setUnit } from "../db/group-commit.js";
import { checkedChildIn, checkedProjectIn } from "../auth/tenancy.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { newId, newSortableId } from "../ids.js";
import type { ApiKeys } from "../keys/api-keys.js";
import { modelAllowed } from "../keys/model-patterns.js";
import * as ledger from "../ledger/ledger.js";
import { type Micros, addMicros, comparableMicros } from "../ledger/micros.js";
import { callerEnvironment, sandboxAvailable, topUpSandbox } from "../ledger/sandbox.js";
import { invoiceUsage } from "../billing/outbox.js";
import { budgetRefusal, refundBudget, reserveBudget, settleBudget } from "../wallets/wallet-budgets.js";
import type { Logger } from "../logger.js";
import type { Plan, Plans } from "../plans/plans.js";
import { monthKey } from "./period.js";
import { rollUpRecord } from "./usage-rollups.js";
import { RecordSet } from "./record-set.js";
import { requireOccurTime } from "./backdating.js";
import { type ModelPrice, modelCost } from "./pricing.js";
import type { UsageAuthorizationTable, UsageRecordTable } from "./usage-tables.js";
import { accountName, authorizationName, parseChildName, recordName } from "../names/names.js";

export type UsageRecordRow = Selectable<UsageRecordTable>;
export type AuthorizationRow = Selectable<UsageAuthorizationTable>;
export type Caller = UserPrincipal | ApiKeyPrincipal;
export type RecordResult = { record: UsageRecordRow; balance: Micros };

/** What metering needs from the catalog: current prices of what a project may use, and hires. */
export interface PriceBook {
  modelPrice(db: Db, projectId: string, model: string): Promise<(ModelPrice & { name: string }) | undefined>;
  /** The price in force at `at` (epoch ms); undefined also before the model had a price. */
  modelPriceAt(db: Db, projectId: string, model: string, at: number): Promise<(ModelPrice & { name: string }) | undefined>;
  /**
   * An agent the project has hired and may invoke now, and its owner (agents are keyed by owner and id);
   * `via` (InvokeAgent's hire) names the agent exactly, else the name resolves as the project sees it.
   */
  agentPrice(db: Db, projectId: string, agent: string, via?: string): Promise<{ name: string; ownerProject: string; pricePerInvocationMicros: number } | undefined>;
  /** The same agent's per-invocation price in force at `at` (epoch ms); `price` undefined before it had one. */
  agentPriceAt(db: Db, projectId: string, agent: string, at: number, via?: string): Promise<{ name: string; ownerProject: string; price?: number } | undefined>;
  /** For eligibility: whether the project can see the agent, has hired it, and its slot use. */
  hireStatus(db: Db, projectId: string, agent: string): Promise<{ visible: boolean; hired: boolean; pricePerInvocationMicros: number; slotsUsed: number }>;
}

export type EligibilityCheck =
  | { kind: "model"; model: string; inputTokens: number; outputTokens: number }
  | { kind: "hire"; agent: string }
  | { kind: "invoke"; agent: string };

export interface Eligibility {
  eligible: boolean;
  reason: LimitReason;
  message: string;
  costMicros: number;
  upgrades: Plan[];
  balance: Micros;
  creditsNeeded: number;
  hireRequired: boolean;
}

export type UsageInput =
  | { kind: "model"; model: string; inputTokens: number; outputTokens: number }
  /** An agent operation; tokens it reports are charged at `model`'s price on top of the invocation price. */
  | { kind: "agent"; agent: string; operation: string; model?: string; inputTokens?: number; outputTokens?: number };

export interface RecordInput {
  requestId: string;
  usage: UsageInput;
  authorization?: string;
  occurTime?: number;
  attributes: Record<string, string>;
  /** The customer key to attribute and cap the usage by (a gateway's case). */
  apiKey?: string;
  invocation?: string;
  /** Whose request id this is: RecordUsage's (default) or InvokeAgent's; each replays only its own. */
  namespace?: RequestNamespace;
}

export type RequestNamespace = "usage" | "invoke";

/** The ledger idempotency key of a usage debit, per request-id namespace. */
export const debitKey = (namespace: RequestNamespace, requestId: string) => `${namespace}:${requestId}`;

/** What a usage record is made of once priced and paid (the per-unit path and the set writer both store this). */
export interface RecordFacts {
  recordId: string;
  projectId: string;
  namespace: RequestNamespace;
  env: ledger.Environment;
  hash: string;
  caller: Caller;
  input: RecordInput;
  priced: Awaited<ReturnType<Usage["price"]>>;
  keyId: string | null | undefined;
  authorizationId: string | null;
  balance: Micros;
  occur: number;
  now: number;
}

/** The usage_record row of a priced, paid usage. */
export function usageRecordRow(f: RecordFacts): UsageRecordRow {
  const { input, priced } = f;
  return {
    record_id: f.recordId,
    project_id: f.projectId,
    request_id: input.requestId,
    request_namespace: f.namespace,
    environment: f.env,
    request_hash: f.hash,
    kind: input.usage.kind,
    model: input.usage.kind === "model" ? priced.subject : (priced.tokenModel ?? null),
    agent: input.usage.kind === "agent" ? priced.subject : null,
    agent_owner: priced.agentOwner ?? null,
    operation: input.usage.kind === "agent" ? input.usage.operation : null,
    input_tokens: input.usage.inputTokens ?? 0,
    output_tokens: input.usage.outputTokens ?? 0,
    cost_micros: priced.cost,
    input_price: priced.inputPrice,
    output_price: priced.outputPrice,
    invocation_price: priced.invocationPrice,
    api_key_id: f.keyId ?? null,
    recorded_by_kind: f.caller.kind,
    recorded_by: f.caller.subject,
    authorization_id: f.authorizationId,
    invocation: input.invocation ?? null,
    attributes: JSON.stringify(input.attributes),
    balance_after_micros: f.balance,
    occur_time: f.occur,
    create_time: f.now,
  };
}

export interface UsageDeps {
  database: Database;
  plans: Plans;
  clock: Clock;
  log: Logger;
  keys: ApiKeys;
  prices: PriceBook;
  planOf(projectId: string): Promise<Plan>;
  /** Revenue share (src/marketplace): books the publishers' split of a debit in the debit's transaction. */
  marketplace?: { bookUsage(tx: Db, record: UsageRecordRow): Promise<void>; bookUsages?(tx: Db, records: UsageRecordRow[]): Promise<void> };
  /** Told after a project's usage committed (spend alerts check it soon); must return at once. */
  afterDebit?(projectId: string): void;
  /** Where the group commit's time goes (the server-side histograms, `group_commit/<stage>`). */
  observeCommit?: GroupCommitOptions["observe"];
}

/** How long a hold lasts when AuthorizeUsage names no ttl (documented in usage_service.proto). */
export const DEFAULT_HOLD_MS = 5 * 60_000;
const SWEEP_MS = 15_000;

export { authorizationName, recordName };

/** The month's included-credits entry of a plan (granted once a month, on first use; record-set.ts decides it in memory). */
export function planCreditsEntry(projectId: string, plan: Plan, now: number): ledger.LedgerEntry {
  const month = monthKey(now);
  return { projectId, kind: "plan_credits", amountMicros: plan.includedCreditsMicros, idempotencyKey: `plan-credits:${month}`, description: `${plan.displayName} included credits ${month}` };
}

function requestHash(parts: unknown): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex");
}

export class Usage {
  private sweeper?: NodeJS.Timeout;
  /** Usage records are the hot write: concurrent ones share a commit (SQLite; a plain transaction elsewhere). */
  readonly commits: GroupCommit;
  /** Decides and writes runs of concurrent records together (record-set.ts). */
  private readonly recordSet: RecordSet;
  /** False: every record takes the per-unit path (a test compares the two; record-set.property.test.ts). */
  setBased = true;

  constructor(private readonly deps: UsageDeps) {
    this.commits = createGroupCommit(deps.database, {
      onSetFallback: (err) => deps.log.debug({ err }, "usage records of a group commit decided one by one"),
      observe: deps.observeCommit,
    });
    this.recordSet = new RecordSet({ usage: this, keys: deps.keys, prices: deps.prices, marketplace: deps.marketplace, clock: deps.clock });
  }

  /** The database handle, for callers that resolve their target before recording. */
  database(): Db {
    return this.deps.database.db;
  }

  /** Starts the expiry of unused holds (each returns its credits). */
  start(): void {
    this.sweeper ??= setInterval(() => void this.expireHolds().catch((err: unknown) => this.deps.log.warn({ err }, "hold expiry failed")), SWEEP_MS);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Records usage: priced, checked and debited in one transaction; idempotent by request id. */
  async record(caller: Caller, parent: string, input: RecordInput): Promise<RecordResult> {
    const projectId = this.ownProject(caller, parent);
    const now = this.deps.clock.now();
    requireOccurTime(input.occurTime, now);
    const plan = await this.deps.planOf(projectId);
    // Settling a hold that has expired must fail *and* return its credits: expire due holds in their own
    // transaction first, since the refusal below rolls back everything in the main one.
    // Everything below checks and writes only this project's rows (its ledger, keys, holds, wallet budgets),
    // so on PostgreSQL it is scoped to the project: other projects' usage is recorded in parallel.
    const scope = { scope: projectId };
    if (input.authorization) await this.deps.database.transaction((tx) => this.expireProjectHolds(tx, projectId, now), scope);
    const result = await this.commits.run(this.recordUnit(caller, projectId, plan, input, now), scope);
    this.deps.afterDebit?.(projectId);
    return result;
  }

  /**
   * Records a batch of usages of one project (BatchRecordUsage): each item is
   * decided in order exactly as `record` would decide it after the items
   * before it, fails alone, and is answered after the commit holding it.
   */
  async recordBatch(caller: Caller, parent: string, inputs: RecordInput[]): Promise<Outcome<RecordResult>[]> {
    const projectId = this.ownProject(caller, parent);
    const now = this.deps.clock.now();
    const plan = await this.deps.planOf(projectId);
    const scope = { scope: projectId };
    if (inputs.some((i) => i.authorization)) await this.deps.database.transaction((tx) => this.expireProjectHolds(tx, projectId, now), scope);
    const refused = new Map<number, unknown>();
    const units = inputs.map((input, i) => {
      try {
        requireOccurTime(input.occurTime, now);
        return this.recordUnit(caller, projectId, plan, input, now);
      } catch (error) {
        refused.set(i, error);
        return () => Promise.reject(error);
      }
    });
    // Items refused before the store are not sent to it (they would only cost a savepoint).
    const sent = await this.commits.runAll(units.filter((_, i) => !refused.has(i)), scope);
    if (sent.some((o) => o.ok)) this.deps.afterDebit?.(projectId);
    for (const o of sent) if (!o.ok && !(o.error instanceof ConnectError)) this.deps.log.error({ err: o.error }, "batch item crashed");
    let k = 0;
    return inputs.map((_, i) => (refused.has(i) ? { ok: false, error: refused.get(i) } : sent[k++]));
  }

  /** The write unit of one usage record (run alone or in a group commit). */
  private recordUnit(caller: Caller, projectId: string, plan: Plan, input: RecordInput, now: number): (tx: Db) => Promise<RecordResult> {
    const namespace = input.namespace ?? "usage";
    // Test keys meter against the sandbox ledger (docs/test-mode.md): every read and write below names it.
    const env = callerEnvironment(caller);
    const hash = requestHash([input.usage, input.authorization ?? "", input.apiKey ?? "", input.occurTime ?? null, input.attributes]);
    const unit = this.recordOne(caller, projectId, plan, input, now, namespace, env, hash);
    // The common case (no hold to settle, no wallet budget) may be decided with its neighbours and written set-based
    // (record-set.ts); `unit` stays its exact per-unit path.
    if (this.setBased && !input.authorization && !(caller.kind === "user" && caller.wallet?.budget)) {
      return setUnit(unit, this.recordSet, { caller, projectId, plan, input, now, env, namespace, hash });
    }
    return unit;
  }

  /** The per-unit path of one usage record. */
  private recordOne(caller: Caller, projectId: string, plan: Plan, input: RecordInput, now: number, namespace: RequestNamespace, env: ledger.Environment, hash: string): (tx: Db) => Promise<RecordResult> {
    return async (tx) => {
      const replay = await tx
        .selectFrom("usage_record")
        .selectAll()
        .where("project_id", "=", projectId)
        .where("environment", "=", env)
        .where("request_namespace", "=", namespace)
        .where("request_id", "=", input.requestId)
        .executeTakeFirst();
      if (replay) {
        if (replay.request_hash !== hash) throw invalidArgument("request_id", "was already used for different usage");
        return { record: replay, balance: replay.balance_after_micros };
      }
      await this.requireAccount(tx, projectId);
      const priced = await this.price(tx, caller, projectId, input.usage, input.occurTime, input.invocation);
      const keyId = await this.attributedKey(tx, caller, projectId, input.apiKey, input.usage);
      const recordId = newSortableId();
      let authId: string | null = null;
      if (input.authorization) {
        const auth = await this.heldAuthorization(tx, projectId, input.authorization, now, env);
        authId = auth.auth_id;
        // Settling: the hold comes back, the actual cost goes out (even below zero: the work is done).
        await ledger.book(tx, { projectId, environment: env, kind: "hold_release", amountMicros: auth.held_micros, idempotencyKey: `hold-release:${auth.auth_id}`, authorizationId: auth.auth_id, description: "hold settled" }, now);
        if (auth.api_key_id) await this.deps.keys.addSpend(tx, auth.api_key_id, -auth.held_micros);
        if (auth.budget_id) await settleBudget(tx, auth.budget_id, auth.held_micros, priced.cost, now);
        await tx
          .updateTable("usage_authorization")
          .set({ state: "settled", settled_micros: priced.cost, usage_record_id: recordId, close_time: now })
          .where("auth_id", "=", auth.auth_id)
          .execute();
      } else {
        await this.requireFunds(tx, projectId, plan, priced.cost, env);
        // A wallet token's budget is spent by the same transaction as the credits.
        if (caller.kind === "user" && caller.wallet?.budget) await reserveBudget(tx, caller.wallet.budget, priced.cost, now);
      }
      if (keyId) {
        if (!input.authorization) await this.requireSpendRoom(tx, keyId, priced.cost);
        await this.deps.keys.addSpend(tx, keyId, priced.cost);
      }
      const debit = await ledger.book(
        tx,
        { projectId, environment: env, kind: "usage_debit", amountMicros: -priced.cost, idempotencyKey: debitKey(namespace, input.requestId), usageRecordId: recordId, actor: caller.subject, description: priced.subject },
        now,
      );
      const occur = input.occurTime ?? now;
      const balance = await invoiceUsage(tx, debit.row, plan, occur);
      const record = usageRecordRow({ recordId, projectId, namespace, env, hash, caller, input, priced, keyId, authorizationId: authId, balance, occur, now });
      await tx.insertInto("usage_record").values(record).execute();
      await this.rollUp(tx, record);
      await this.deps.marketplace?.bookUsage(tx, record);
      return { record, balance };
    };
  }

  /** Places a hold for an estimated cost; idempotent by request id. */
  async authorize(
    caller: Caller,
    parent: string,
    input: { requestId: string; estimate: UsageInput | { kind: "cost"; micros: number }; ttlMs?: number; apiKey?: string },
  ): Promise<{ auth: AuthorizationRow; balance: Micros }> {
    const projectId = this.ownProject(caller, parent);
    const env = callerEnvironment(caller);
    const now = this.deps.clock.now();
    const hash = requestHash([input.estimate, input.ttlMs ?? null, input.apiKey ?? ""]);
    const plan = await this.deps.planOf(projectId);
    // Holds are hot writes like records: concurrent ones share a commit (each decided as if alone, in arrival order).
    return this.commits.run(async (tx) => {
      const replay = await tx.selectFrom("usage_authorization").selectAll().where("project_id", "=", projectId).where("environment", "=", env).where("request_id", "=", input.requestId).executeTakeFirst();
      if (replay) {
        if (replay.request_hash !== hash) throw invalidArgument("request_id", "was already used for a different authorization");
        return { auth: replay, balance: await this.balanceAfterHold(tx, replay) };
      }
      await this.requireAccount(tx, projectId);
      const est = input.estimate;
      let amount: number;
      let model: string | null = null;
      let agent: string | null = null;
      if (est.kind === "cost") {
        amount = est.micros;
      } else {
        const priced = await this.price(tx, caller, projectId, est);
        amount = priced.cost;
        if (est.kind === "model") model = priced.subject;
        else agent = priced.subject;
      }
      const keyId = await this.attributedKey(tx, caller, projectId, input.apiKey, est.kind === "cost" ? undefined : est);
      await this.requireFunds(tx, projectId, plan, amount, env);
      if (keyId) {
        await this.requireSpendRoom(tx, keyId, amount);
        await this.deps.keys.addSpend(tx, keyId, amount);
      }
      const budget = caller.kind === "user" ? caller.wallet?.budget : undefined;
      if (budget) await reserveBudget(tx, budget, amount, now);
      const authId = newId();
      await ledger.book(tx, { projectId, environment: env, kind: "hold", amountMicros: -amount, idempotencyKey: `hold:${authId}`, authorizationId: authId, actor: caller.subject, description: "hold" }, now);
      const auth: AuthorizationRow = {
        auth_id: authId,
        project_id: projectId,
        environment: env,
        request_id: input.requestId,
        request_hash: hash,
        held_micros: amount,
        settled_micros: 0,
        state: "held",
        model,
        agent,
        api_key_id: keyId ?? null,
        budget_id: budget?.id ?? null,
        usage_record_id: null,
        create_time: now,
        expire_time: now + (input.ttlMs || DEFAULT_HOLD_MS),
        close_time: null,
      };
      await tx.insertInto("usage_authorization").values(auth).execute();
      return { auth, balance: await ledger.balanceOf(tx, projectId, env) };
    }, { scope: projectId });
  }

  /** Releases an unused hold; a released hold is returned unchanged. */
  async release(caller: Caller, name: string): Promise<{ auth: AuthorizationRow; balance: Micros }> {
    const { projectId, id } = this.ownAuthorization(caller, name);
    const env = callerEnvironment(caller);
    const now = this.deps.clock.now();
    return this.deps.database.transaction(async (tx) => {
      const auth = await tx.selectFrom("usage_authorization").selectAll().where("project_id", "=", projectId).where("environment", "=", env).where("auth_id", "=", id).executeTakeFirst();
      if (!auth) throw notFound(`authorization "${name}"`);
      if (auth.state === "released") return { auth, balance: await ledger.balanceOf(tx, projectId, env) };
      if (auth.state !== "held" || auth.expire_time <= now) throw failedPrecondition(`authorization ${name} is ${auth.state === "held" ? "expired" : auth.state}`, "AUTHORIZATION_NOT_HELD");
      await this.returnHold(tx, auth, "released", now);
      return { auth: (await tx.selectFrom("usage_authorization").selectAll().where("auth_id", "=", id).executeTakeFirstOrThrow()), balance: await ledger.balanceOf(tx, projectId, env) };
    }, { scope: projectId });
  }

  /** Returns the credits of every hold past its expiry (all projects). */
  async expireHolds(): Promise<number> {
    const now = this.deps.clock.now();
    const due = await this.deps.database.db.selectFrom("usage_authorization").select("auth_id").where("state", "=", "held").where("expire_time", "<=", now).limit(500).execute();
    let n = 0;
    for (const { auth_id } of due) {
      await this.deps.database.transaction(async (tx) => {
        const auth = await tx.selectFrom("usage_authorization").selectAll().where("auth_id", "=", auth_id).executeTakeFirst();
        if (auth?.state === "held" && auth.expire_time <= now) {
          await this.returnHold(tx, auth, "expired", now);
          n++;
        }
      });
    }
    return n;
  }

  /**
   * Returns the credits of this project's holds past their expiry now, so a
   * reader (GetAccount, VerifyApiKey, eligibility, forecasts, the ledger list)
   * shows the balance as of this instant rather than as of the last sweep.
   * One indexed read when nothing is due; a write transaction only when a hold is.
   */
  async returnExpiredHolds(projectId: string): Promise<void> {
    const now = this.deps.clock.now();
    const due = await this.deps.database.db
      .selectFrom("usage_authorization")
      .select("auth_id")
      .where("project_id", "=", projectId)
      .where("state", "=", "held")
      .where("expire_time", "<=", now)
      .limit(1)
      .executeTakeFirst();
    if (due) await this.deps.database.transaction((tx) => this.expireProjectHolds(tx, projectId, now), { scope: projectId });
  }

  /** When the project's earliest open hold expires, or null without one (for the balance cache, accounts.ts). */
  async nextHoldExpiry(projectId: string): Promise<number | null> {
    const r = await this.deps.database.db
      .selectFrom("usage_authorization")
      .select((eb) => eb.fn.min<number>("expire_time").as("t"))
      .where("project_id", "=", projectId)
      .where("state", "=", "held")
      .executeTakeFirst();
    return r?.t === null || r?.t === undefined ? null : Number(r.t);
  }

  /** The balance a hold left when it was placed (what its first answer said). */
  private async balanceAfterHold(tx: Db, auth: AuthorizationRow): Promise<Micros> {
    const env = auth.environment as ledger.Environment;
    const entry = await ledger.findByIdempotencyKey(tx, auth.project_id, `hold:${auth.auth_id}`, env);
    return entry ? entry.balance_after_micros : ledger.balanceOf(tx, auth.project_id, env);
  }

  /** Expired holds of one project, returned inside the caller's transaction (so a check sees them freed). */
  private async expireProjectHolds(tx: Db, projectId: string, now: number): Promise<void> {
    const due = await tx.selectFrom("usage_authorization").selectAll().where("project_id", "=", projectId).where("state", "=", "held").where("expire_time", "<=", now).execute();
    for (const auth of due) await this.returnHold(tx, auth, "expired", now);
  }

  private async returnHold(tx: Db, auth: AuthorizationRow, state: "released" | "expired", now: number): Promise<void> {
    await ledger.book(tx, { projectId: auth.project_id, environment: auth.environment as ledger.Environment, kind: "hold_release", amountMicros: auth.held_micros, idempotencyKey: `hold-release:${auth.auth_id}`, authorizationId: auth.auth_id, description: `hold ${state}` }, now);
    if (auth.api_key_id) await this.deps.keys.addSpend(tx, auth.api_key_id, -auth.held_micros);
    if (auth.budget_id) await refundBudget(tx, auth.budget_id, auth.held_micros, now);
    await tx.updateTable("usage_authorization").set({ state, close_time: now }).where("auth_id", "=", auth.auth_id).execute();
  }

  /** Whether a call would be allowed now, and why not. Reads only: changes nothing. */
  async eligibility(caller: Caller, parent: string, check: EligibilityCheck): Promise<Eligibility> {
    const projectId = this.ownProject(caller, parent);
    const env = callerEnvironment(caller);
    const db = this.deps.database.db;
    await this.requireAccount(db, projectId);
    await this.returnExpiredHolds(projectId);
    const plan = await this.deps.planOf(projectId);
    const now = this.deps.clock.now();
    // Plan credits (sandbox credits in test mode) not yet granted this month count as available (they are granted on first use).
    const granted = await ledger.findByIdempotencyKey(db, projectId, `plan-credits:${monthKey(now)}`);
    const balance =
      env === "test" ? await sandboxAvailable(db, projectId, plan, now) : addMicros(await ledger.balanceOf(db, projectId), granted ? 0 : plan.includedCreditsMicros);
    const result: Eligibility = { eligible: true, reason: LimitReason.UNSPECIFIED, message: "allowed", costMicros: 0, upgrades: [], balance, creditsNeeded: 0, hireRequired: false };
    if (check.kind === "hire") {
      const status = await this.deps.prices.hireStatus(db, projectId, check.agent);
      if (!status.visible) throw notFound(`agent "${check.agent}"`);
      if (status.hired) return { ...result, message: "already hired" };
      if (plan.agentSlots !== null && status.slotsUsed >= plan.agentSlots) {
        const upgrades = this.deps.plans.upgradesFrom(plan, (p) => p.agentSlots === null || p.agentSlots > status.slotsUsed);
        return { ...result, eligible: false, reason: LimitReason.AGENT_SLOTS, message: `the ${plan.displayName} plan allows ${plan.agentSlots} hired agents and ${status.slotsUsed} are hired`, upgrades };
      }
      return result;
    }
    let cost: number;
    if (check.kind === "invoke") {
      const status = await this.deps.prices.hireStatus(db, projectId, check.agent);
      if (!status.visible) throw notFound(`agent "${check.agent}"`);
      cost = status.pricePerInvocationMicros;
      if (!status.hired) return { ...result, eligible: false, message: "hire the agent first", costMicros: cost, hireRequired: true };
    } else {
      cost = (await this.price(db, caller, projectId, { kind: "model", model: check.model, inputTokens: check.inputTokens, outputTokens: check.outputTokens })).cost;
    }
    result.costMicros = cost;
    if (caller.kind === "api_key") {
      const refusal = await this.deps.keys.spendRefusal(db, caller.keyId, cost);
      if (refusal) return { ...result, eligible: false, reason: LimitReason.SPEND_CAP, message: `spend cap of ${refusal.keyName} reached` };
    }
    if (caller.kind === "user" && caller.wallet?.budget) {
      const refusal = await budgetRefusal(db, caller.wallet.budget, cost, now);
      if (refusal) return { ...result, eligible: false, reason: LimitReason.SPEND_CAP, message: refusal };
    }
    if (!plan.overdraftAllowed && balance < cost) {
      const err = this.creditsExhausted(plan, comparableMicros(balance), cost, projectId, env);
      const upgrades = this.deps.plans.upgradesFrom(plan, (p) => p.overdraftAllowed || p.includedCreditsMicros > plan.includedCreditsMicros);
      return { ...result, eligible: false, reason: LimitReason.CREDITS_EXHAUSTED, message: err.rawMessage, upgrades, creditsNeeded: cost - comparableMicros(balance) };
    }
    return result;
  }

  // ---- checks shared by record, authorize and eligibility ----

  /**
   * Prices usage at the catalog's price in force at `at` (a backdated record's
   * occur_time; undefined = now); unknown or invisible is INVALID_ARGUMENT
   * naming the field. Agents keep a price history too: a backdated agent
   * operation pays the per-invocation price in force at `at`.
   */
  async price(db: Db, caller: Caller, projectId: string, usage: UsageInput, at?: number, via?: string, prices: PriceBook = this.deps.prices) {
    if (usage.kind === "model") {
      if (caller.kind === "api_key" && !modelAllowed(caller.allowedModels, usage.model)) {
        throw permissionDenied(`this API key may not use ${usage.model}`, "MODEL_NOT_ALLOWED");
      }
      this.requireWalletModel(caller, usage.model);
      const price = await this.modelPriceAt(db, projectId, usage.model, at, "model_usage.model", prices);
      return {
        subject: price.name,
        cost: modelCost(price, usage.inputTokens, usage.outputTokens),
        inputPrice: price.inputPriceMicrosPerMillion,
        outputPrice: price.outputPriceMicrosPerMillion,
        invocationPrice: 0,
      };
    }
    const agent = await this.agentPriceAt(db, projectId, usage.agent, at, via, prices);
    let tokenCost = 0;
    let inputPrice = 0;
    let outputPrice = 0;
    // The model an agent's tokens are charged at; recorded (and reported under) only when tokens were charged.
    let tokenModel: string | undefined;
    if (usage.model && (usage.inputTokens || usage.outputTokens)) {
      this.requireWalletModel(caller, usage.model);
      const price = await this.modelPriceAt(db, projectId, usage.model, at, "agent_operation.model", prices);
      tokenCost = modelCost(price, usage.inputTokens ?? 0, usage.outputTokens ?? 0);
      inputPrice = price.inputPriceMicrosPerMillion;
      outputPrice = price.outputPriceMicrosPerMillion;
      tokenModel = price.name;
    }
    return {
      subject: agent.name,
      agentOwner: agent.ownerProject,
      cost: agent.pricePerInvocationMicros + tokenCost,
      tokenCost,
      inputPrice,
      outputPrice,
      invocationPrice: agent.pricePerInvocationMicros,
      tokenModel,
    };
  }

  /** An agent's per-invocation price at `at` (now when undefined): INVALID_ARGUMENT when not invocable, or at a time before its first price. */
  private async agentPriceAt(db: Db, projectId: string, agent: string, at: number | undefined, via: string | undefined, prices: PriceBook): Promise<{ name: string; ownerProject: string; pricePerInvocationMicros: number }> {
    const unknown = () => invalidArgument("agent_operation.agent", `unknown agent ${agent}, or not hired by this project`);
    if (at === undefined) {
      const current = await prices.agentPrice(db, projectId, agent, via);
      if (!current) throw unknown();
      return current;
    }
    const then = await prices.agentPriceAt(db, projectId, agent, at, via);
    if (!then) throw unknown();
    if (then.price === undefined) throw invalidArgument("occur_time", `${then.name} had no price at ${new Date(at).toISOString()} (it was published later)`);
    return { name: then.name, ownerProject: then.ownerProject, pricePerInvocationMicros: then.price };
  }

  /** A model's price at `at` (now when undefined): INVALID_ARGUMENT for an unknown model, or a time before its first price. */
  private async modelPriceAt(db: Db, projectId: string, model: string, at: number | undefined, field: string, prices: PriceBook): Promise<ModelPrice & { name: string }> {
    const current = await prices.modelPrice(db, projectId, model);
    if (!current) throw invalidArgument(field, `unknown model ${model}`);
    if (at === undefined) return current;
    const then = await prices.modelPriceAt(db, projectId, model, at);
    if (!then) throw invalidArgument("occur_time", `${current.name} had no price at ${new Date(at).toISOString()} (it was published later)`);
    return then;
  }

  /** A wallet token's `models` claim limits which models it may meter. */
  private requireWalletModel(caller: Caller, model: string): void {
    const models = caller.kind === "user" ? caller.wallet?.models : undefined;
    if (models && models.length > 0 && !modelAllowed(models, model)) throw permissionDenied(`this wallet token may not use ${model}`, "MODEL_NOT_ALLOWED");
  }

  /** The key usage is attributed to: the named customer key, else the calling key. `keys` may memoize `forMetering` (record-set.ts). */
  async attributedKey(tx: Db, caller: Caller, projectId: string, apiKey: string | undefined, usage: UsageInput | undefined, keys: Pick<ApiKeys, "forMetering"> = this.deps.keys): Promise<string | undefined> {
    if (!apiKey) return caller.kind === "api_key" ? caller.keyId : undefined;
    const ref = parseChildName(apiKey, "apiKeys");
    if (!ref || ref.project !== projectId) throw notFound(`API key "${apiKey}"`);
    const key = await keys.forMetering(tx, projectId, ref.id);
    if (!key.usable) throw failedPrecondition(`API key ${apiKey} is revoked or expired`, "API_KEY_NOT_ACTIVE");
    // Usage is attributed only to a key of the caller's environment (docs/test-mode.md).
    const env = callerEnvironment(caller);
    if (key.environment !== env) throw failedPrecondition(`API key ${apiKey} is a ${key.environment} key and this call meters ${env} usage`, "API_KEY_ENVIRONMENT_MISMATCH");
    if (usage?.kind === "model" && !modelAllowed(key.allowedModels, usage.model)) {
      throw permissionDenied(`API key ${apiKey} may not use ${usage.model}`, "MODEL_NOT_ALLOWED");
    }
    return key.keyId;
  }

  private async requireFunds(tx: Db, projectId: string, plan: Plan, cost: number, env: ledger.Environment): Promise<void> {
    await this.expireProjectHolds(tx, projectId, this.deps.clock.now());
    if (env === "test") await topUpSandbox(tx, projectId, plan, this.deps.clock.now());
    else await this.grantPlanCredits(tx, projectId, plan);
    const balance = await ledger.balanceOf(tx, projectId, env);
    if (plan.overdraftAllowed || balance >= cost) return;
    throw this.creditsExhausted(plan, comparableMicros(balance), cost, projectId, env);
  }

  private async requireSpendRoom(tx: Db, keyId: string, cost: number): Promise<void> {
    const refusal = await this.deps.keys.spendRefusal(tx, keyId, cost);
    if (refusal) throw this.spendCapReached(refusal, cost);
  }

  /** Payment required: `cost` more would pass the spend cap of `refusal.keyName`. */
  spendCapReached(refusal: { keyName: string; cap: number; spent: number }, cost: number): ConnectError {
    return paymentRequired({
      reason: LimitReason.SPEND_CAP,
      projectId: refusal.keyName.split("/")[1],
      requestedMicros: cost,
      availableMicros: refusal.cap - refusal.spent,
      limitedResource: refusal.keyName,
      limitMicros: refusal.cap,
      usedMicros: refusal.spent,
      message: `spend cap reached for ${refusal.keyName}: ${refusal.spent} of ${refusal.cap} micro-USD spent, this call needs ${cost}`,
    });
  }

  /** The plan's included credits for the current month, granted once (lazily, on first use in the month). */
  private async grantPlanCredits(tx: Db, projectId: string, plan: Plan): Promise<void> {
    if (plan.includedCreditsMicros <= 0) return;
    await ledger.book(tx, planCreditsEntry(projectId, plan, this.deps.clock.now()), this.deps.clock.now());
  }

  /** Payment required (FAILED_PRECONDITION + PaymentRequired): how much is missing and which plans include more. */
  creditsExhausted(plan: Plan, balance: number, cost: number, projectId: string, env: ledger.Environment = "live"): ConnectError {
    const needed = cost - balance;
    const upgrades = this.deps.plans.upgradesFrom(plan, (p) => p.overdraftAllowed || p.includedCreditsMicros > plan.includedCreditsMicros);
    // Test mode: real money never refills a sandbox (docs/test-mode.md).
    if (env === "test") {
      return paymentRequired({
        reason: LimitReason.CREDITS_EXHAUSTED,
        projectId,
        requestedMicros: cost,
        availableMicros: balance,
        limitMicros: Math.max(balance, 0),
        usedMicros: 0,
        sandbox: true,
        message: `sandbox credits exhausted: the test-mode balance is ${balance} micro-USD and this call costs ${cost}; grant ${needed} micro-USD of sandbox credits (AddCredits) or wait for next month's allowance`,
      });
    }
    return paymentRequired({
      reason: LimitReason.CREDITS_EXHAUSTED,
      projectId,
      requestedMicros: cost,
      availableMicros: balance,
      limitMicros: Math.max(balance, 0),
      usedMicros: 0,
      upgrades: upgrades.map((p) => create(UpgradeOptionSchema, { tier: p.tier, limit: BigInt(p.includedCreditsMicros), unlimited: p.overdraftAllowed })),
      message: `credits exhausted: the balance is ${balance} micro-USD and this call costs ${cost}; add ${needed} micro-USD of credits or upgrade`,
    });
  }

  private async heldAuthorization(tx: Db, projectId: string, name: string, now: number, env: ledger.Environment): Promise<AuthorizationRow> {
    const ref = parseChildName(name, "authorizations");
    if (!ref || ref.project !== projectId) throw notFound(`authorization "${name}"`);
    // A hold is settled only in its own environment: a live record never spends a sandbox hold, or the reverse.
    const auth = await tx.selectFrom("usage_authorization").selectAll().where("project_id", "=", projectId).where("environment", "=", env).where("auth_id", "=", ref.id).executeTakeFirst();
    if (!auth) throw notFound(`authorization "${name}"`);
    if (auth.state === "held" && auth.expire_time <= now) throw failedPrecondition(`authorization ${name} expired`, "AUTHORIZATION_NOT_HELD");
    if (auth.state !== "held") throw failedPrecondition(`authorization ${name} is ${auth.state}`, "AUTHORIZATION_NOT_HELD");
    return auth;
  }

  /** The record's report lines into its hour's rollups (the rules: usage-rollups.ts). */
  private rollUp(tx: Db, r: UsageRecordRow): Promise<void> {
    return rollUpRecord(tx, r);
  }

  private async requireAccount(tx: Db, projectId: string): Promise<void> {
    const row = await tx.selectFrom("account").select("project_id").where("project_id", "=", projectId).executeTakeFirst();
    if (!row) throw notFound(`account "${accountName(projectId)}"`);
  }

  /** The project of a name the tenancy interceptor checked is the caller's (src/auth/tenancy.ts). */
  private ownProject(_caller: Caller, name: string): string {
    return checkedProjectIn(name);
  }

  private ownAuthorization(caller: Caller, name: string): { projectId: string; id: string } {
    const { project, id } = checkedChildIn(name, "authorizations");
    return { projectId: project, id };
  }
}
