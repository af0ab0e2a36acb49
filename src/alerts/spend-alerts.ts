/**
 * Spend alerts: thresholds on an account's or a key's spend that fire once
 * per period as signed webhooks. Rules live in `alert_rule`; a watcher
 * compares spend with each rule on an interval (off the metering hot path,
 * so recording usage pays nothing for alerts) and, when a rule is crossed,
 * writes in one transaction the rule's firing for the period (unique per
 * rule and period, so it fires once however many instances watch) and the
 * webhook into the outbox (`webhook_delivery`), which webhook-sender.ts
 * delivers with retries.
 *
 * Spend is what usage records charged (by occur_time) in the calendar month
 * (UTC), for the account or for usage attributed to the key. Percentages are
 * of the month's credits (spent this month + the balance now) for an
 * account, and of the spend cap for a key (its lifetime spend against its
 * cap; such a rule fires once per cap value, so raising the cap re-arms it).
 */
import { isIP } from "node:net";
import type { Selectable } from "kysely";
import type { CheckedProject } from "../auth/tenancy.js";
import type { Clock } from "../clock.js";
import type { Database, Db } from "../db/database.js";
import { decodePageToken, pageOf, pageSize } from "../db/pagination.js";
import { invalidArgument, notFound, withReason } from "../errors.js";
import { Code } from "@connectrpc/connect";
import { newId } from "../ids.js";
import type { Logger } from "../logger.js";
import { monthKey, monthOf } from "../usage/period.js";
import { accountName, childName, keyName, parseChildName } from "../names/names.js";
import type { AlertRuleTable, WebhookDeliveryTable } from "./alert-tables.js";
import { newSigningSecret } from "./webhook-signature.js";
import { Periodic } from "../periodic.js";

export type AlertRuleRow = Selectable<AlertRuleTable>;
export type DeliveryRow = Selectable<WebhookDeliveryTable>;

/** The event type of a crossed threshold. */
export const SPEND_ALERT_EVENT = "spend_alert.triggered";
/** Alerts per account. */
export const MAX_ALERTS = 100;

export const alertName = (projectId: string, id: string) => childName(projectId, "spendAlerts", id);
export const deliveryName = (projectId: string, id: string) => childName(projectId, "alertDeliveries", id);

export interface AlertInput {
  apiKey?: string;
  thresholdMicros?: number;
  thresholdPercent?: number;
  endpointUrl: string;
  description: string;
}

export interface SpendAlertsDeps {
  database: Database;
  clock: Clock;
  log: Logger;
  /** Whether plain-http endpoints are allowed (development only). */
  allowHttp: boolean;
  /** How often spend is compared with the rules, ms. */
  intervalMs: number;
  /** How long after a debit its project's rules are checked (debits meanwhile share the check), ms; 0: never. */
  afterDebitMs?: number;
  /** Told of every firing once it has committed (the event stream publishes it). */
  onFired?: (fired: FiredAlert) => void;
}

/** A rule that fired in a period: what its webhook says. */
export interface FiredAlert {
  /** `evt_...`: the webhook's id and its delivery's. */
  eventId: string;
  rule: AlertRuleRow;
  period: string;
  spent: number;
  /** What a percentage is of; undefined for absolute rules. */
  base?: number;
  time: number;
}

/** What the watcher measured for a rule. */
interface Measure {
  period: string;
  spent: number;
  /** False in a test-mode project, whose alerts watch its sandbox (docs/test-mode.md). */
  livemode: boolean;
  /** What a percentage is of; undefined for absolute rules. */
  base?: number;
}

export class SpendAlerts {
  private readonly loop: Periodic;
  /** Projects with at least one rule, as of the last full check (or a rule created here since). */
  private withRules = new Set<string>();
  private readonly nudged = new Set<string>();
  private nudgeTimer?: NodeJS.Timeout;
  private nudging: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: SpendAlertsDeps) {
    this.loop = new Periodic(() => this.check(), deps.intervalMs, (err) => deps.log.warn({ err }, "spend alert check failed"));
  }

  /** Starts the watcher. */
  start(): void {
    this.loop.start();
    // Which projects have rules, so debits of the others never trigger a check.
    void this.deps.database.db
      .selectFrom("alert_rule")
      .select("project_id")
      .distinct()
      .execute()
      .then((rows) => {
        for (const r of rows) this.withRules.add(r.project_id);
      })
      .catch((err: unknown) => this.deps.log.warn({ err }, "could not read which projects have spend alerts"));
  }

  async stop(): Promise<void> {
    if (this.nudgeTimer) clearTimeout(this.nudgeTimer);
    this.nudgeTimer = undefined;
    await this.loop.stop();
    await this.nudging;
  }

  /**
   * After a project's debit committed: checks its rules shortly, off the
   * caller's path (a timer; debits meanwhile share the check), so an alert
   * fires within `afterDebitMs` instead of at the next interval. Costs
   * nothing for a project without rules (known from the last full check;
   * the interval still catches rules made on another instance since).
   */
  nudge(projectId: string): void {
    if (!this.deps.afterDebitMs || !this.withRules.has(projectId)) return;
    this.nudged.add(projectId);
    this.nudgeTimer ??= setTimeout(() => {
      this.nudgeTimer = undefined;
      const projects = [...this.nudged];
      this.nudged.clear();
      this.nudging = this.nudging.then(() => this.check(projects)).catch((err: unknown) => this.deps.log.warn({ err }, "spend alert check after a debit failed"));
    }, this.deps.afterDebitMs);
    this.nudgeTimer.unref();
  }

  async create(projectId: CheckedProject, input: AlertInput): Promise<{ rule: AlertRuleRow; secret: string }> {
    const url = this.endpoint(input.endpointUrl);
    const now = this.deps.clock.now();
    return this.deps.database.transaction(async (tx) => {
      const account = await tx.selectFrom("account").select("project_id").where("project_id", "=", projectId).executeTakeFirst();
      if (!account) throw notFound(`account "${accountName(projectId)}"`);
      let keyId: string | null = null;
      if (input.apiKey) {
        const ref = parseChildName(input.apiKey, "apiKeys");
        const key = ref && ref.project === projectId ? await tx.selectFrom("api_key").select(["key_id", "spend_cap_micros"]).where("project_id", "=", projectId).where("key_id", "=", ref.id).executeTakeFirst() : undefined;
        if (!key) throw notFound(`API key "${input.apiKey}"`);
        if (input.thresholdPercent && key.spend_cap_micros === null) throw invalidArgument("spend_alert.threshold_percent", `API key ${input.apiKey} has no spend cap to take a percentage of`);
        keyId = key.key_id;
      }
      const count = await tx.selectFrom("alert_rule").select((eb) => eb.fn.countAll<number>().as("n")).where("project_id", "=", projectId).executeTakeFirst();
      if (Number(count?.n ?? 0) >= MAX_ALERTS) throw withReason(Code.ResourceExhausted, `an account has at most ${MAX_ALERTS} spend alerts`, "ALERT_LIMIT");
      const secret = newSigningSecret();
      const rule: AlertRuleRow = {
        rule_id: newId(),
        project_id: projectId,
        api_key_id: keyId,
        threshold_micros: input.thresholdMicros ?? 0,
        threshold_percent: input.thresholdPercent ?? 0,
        endpoint_url: url,
        signing_secret: secret,
        description: input.description,
        create_time: now,
      };
      await tx.insertInto("alert_rule").values(rule).execute();
      this.withRules.add(projectId);
      return { rule, secret };
    }, { scope: projectId });
  }

  async list(projectId: CheckedProject, size: number, token: string): Promise<{ items: AlertRuleRow[]; nextPageToken: string }> {
    const cursor = decodePageToken(token, ["number", "string"]);
    const n = pageSize(size);
    let q = this.deps.database.db.selectFrom("alert_rule").selectAll().where("project_id", "=", projectId);
    if (cursor) q = q.where((eb) => eb.or([eb("create_time", "<", cursor[0] as number), eb.and([eb("create_time", "=", cursor[0] as number), eb("rule_id", "<", cursor[1] as string)])]));
    const rows = await q.orderBy("create_time", "desc").orderBy("rule_id", "desc").limit(n + 1).execute();
    return pageOf(rows, n, (r) => [Number(r.create_time), r.rule_id]);
  }

  async delete(projectId: CheckedProject, id: string): Promise<void> {
    const res = await this.deps.database.transaction((tx) => tx.deleteFrom("alert_rule").where("project_id", "=", projectId).where("rule_id", "=", id).executeTakeFirst(), { scope: projectId });
    if (Number(res.numDeletedRows) === 0) throw notFound(`spend alert "${alertName(projectId, id)}"`);
  }

  async deliveries(projectId: CheckedProject, size: number, token: string): Promise<{ items: DeliveryRow[]; nextPageToken: string }> {
    const cursor = decodePageToken(token, ["number", "string"]);
    const n = pageSize(size);
    let q = this.deps.database.db.selectFrom("webhook_delivery").selectAll().where("project_id", "=", projectId);
    if (cursor) q = q.where((eb) => eb.or([eb("create_time", "<", cursor[0] as number), eb.and([eb("create_time", "=", cursor[0] as number), eb("delivery_id", "<", cursor[1] as string)])]));
    const rows = await q.orderBy("create_time", "desc").orderBy("delivery_id", "desc").limit(n + 1).execute();
    return pageOf(rows, n, (r) => [Number(r.create_time), r.delivery_id]);
  }

  /**
   * Compares every rule (or those of `projects`) with its spend now; fires
   * the crossed ones not yet fired in their period. Returns how many fired.
   */
  async check(projects?: string[]): Promise<number> {
    const db = this.deps.database.db;
    const now = this.deps.clock.now();
    if (projects?.length === 0) return 0;
    const rules = await (projects ? db.selectFrom("alert_rule").selectAll().where("project_id", "in", projects) : db.selectFrom("alert_rule").selectAll()).execute();
    if (!projects) this.withRules = new Set(rules.map((r) => r.project_id));
    let fired = 0;
    for (const rule of rules) {
      const m = await this.measure(db, rule, now);
      if (!m || !crossed(rule, m)) continue;
      const done = await db.selectFrom("alert_firing").select("rule_id").where("rule_id", "=", rule.rule_id).where("period", "=", m.period).executeTakeFirst();
      if (done) continue;
      const firing = await this.fire(rule, m, now);
      if (!firing) continue;
      fired++;
      try {
        this.deps.onFired?.(firing);
      } catch (err) {
        this.deps.log.warn({ err }, "could not announce a spend alert firing");
      }
    }
    return fired;
  }

  private async measure(db: Db, rule: AlertRuleRow, now: number): Promise<Measure | undefined> {
    const month = monthOf(now);
    const period = monthKey(now);
    const account = await db.selectFrom("account").select(["credit_balance_micros", "test_credit_balance_micros", "environment"]).where("project_id", "=", rule.project_id).executeTakeFirst();
    // A live project's alerts watch real money only (sandbox usage by test keys never alerts); a
    // test-mode project's watch its sandbox, so its webhooks can be tested end to end (docs/test-mode.md).
    const testMode = account?.environment === "test";
    const livemode = !testMode;
    if (rule.api_key_id && rule.threshold_percent > 0) {
      const key = await db.selectFrom("api_key").select(["spent_micros", "spend_cap_micros"]).where("key_id", "=", rule.api_key_id).executeTakeFirst();
      if (!key || key.spend_cap_micros === null || Number(key.spend_cap_micros) <= 0) return undefined;
      return { period: `cap:${key.spend_cap_micros}`, spent: Number(key.spent_micros), base: Number(key.spend_cap_micros), livemode };
    }
    let q = db
      .selectFrom("usage_record")
      .select((eb) => eb.fn.sum<number>("cost_micros").as("spent"))
      .where("project_id", "=", rule.project_id)
      .where("environment", "=", testMode ? "test" : "live")
      .where("occur_time", ">=", month.start)
      .where("occur_time", "<", month.end);
    if (rule.api_key_id) q = q.where("api_key_id", "=", rule.api_key_id);
    const spent = Number((await q.executeTakeFirst())?.spent ?? 0);
    if (rule.threshold_percent === 0) return { period, spent, livemode };
    const balance = testMode ? account?.test_credit_balance_micros : account?.credit_balance_micros;
    const base = spent + Math.max(Number(balance ?? 0), 0);
    return base > 0 ? { period, spent, base, livemode } : undefined;
  }

  /** Records the firing and queues the webhook, in one transaction; undefined when another watcher fired it first. */
  private fire(rule: AlertRuleRow, m: Measure, now: number): Promise<FiredAlert | undefined> {
    return this.deps.database.transaction(async (tx) => {
      const done = await tx.selectFrom("alert_firing").select("rule_id").where("rule_id", "=", rule.rule_id).where("period", "=", m.period).executeTakeFirst();
      if (done) return undefined;
      const stillThere = await tx.selectFrom("alert_rule").select("rule_id").where("rule_id", "=", rule.rule_id).executeTakeFirst();
      if (!stillThere) return undefined;
      const eventId = `evt_${newId()}`;
      const body = JSON.stringify({
        id: eventId,
        type: SPEND_ALERT_EVENT,
        created: Math.floor(now / 1000),
        // As Stripe's events: false for a test-mode project's sandbox spending.
        livemode: m.livemode,
        data: {
          spend_alert: alertName(rule.project_id, rule.rule_id),
          account: accountName(rule.project_id),
          ...(rule.api_key_id && { api_key: keyName(rule.project_id, rule.api_key_id) }),
          period: m.period,
          ...(rule.threshold_percent > 0 ? { threshold_percent: rule.threshold_percent, base_micros: m.base } : { threshold_micros: Number(rule.threshold_micros) }),
          spent_micros: m.spent,
        },
      });
      await tx.insertInto("alert_firing").values({ rule_id: rule.rule_id, period: m.period, event_id: eventId, fire_time: now }).execute();
      await tx
        .insertInto("webhook_delivery")
        .values({
          delivery_id: eventId,
          project_id: rule.project_id,
          rule_id: rule.rule_id,
          event_type: SPEND_ALERT_EVENT,
          endpoint_url: rule.endpoint_url,
          payload: body,
          state: "pending",
          attempts: 0,
          next_attempt_time: now,
          lease_owner: null,
          last_status: null,
          last_error: "",
          create_time: now,
          deliver_time: null,
        })
        .execute();
      this.deps.log.info({ rule: rule.rule_id, period: m.period, spent: m.spent }, "spend alert fired");
      return { eventId, rule, period: m.period, spent: m.spent, base: m.base, time: now };
    }, { scope: rule.project_id });
  }

  /** An endpoint URL fit to post to: https (http only when allowed), no credentials in it. */
  private endpoint(raw: string): string {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw invalidArgument("spend_alert.endpoint_url", "must be an absolute URL");
    }
    if (u.protocol !== "https:" && !(this.deps.allowHttp && u.protocol === "http:")) throw invalidArgument("spend_alert.endpoint_url", this.deps.allowHttp ? "must be an http or https URL" : "must be an https URL");
    if (u.username || u.password) throw invalidArgument("spend_alert.endpoint_url", "must not carry credentials");
    // Outside development, no webhooks into the server's own network by literal address (names are not resolved here).
    if (!this.deps.allowHttp && isInternalHost(u.hostname)) throw invalidArgument("spend_alert.endpoint_url", "must not point at a loopback, private or link-local address");
    return u.toString();
  }
}

/** Loopback, private, link-local or unspecified, by literal hostname. */
export function isInternalHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) {
    const [a, b] = h.split(".").map(Number);
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
  }
  if (isIP(h) === 6) return h === "::" || h === "::1" || /^f[cd]/.test(h) || /^fe[89ab]/.test(h) || h.startsWith("::ffff:");
  return false;
}

/** Whether a rule's threshold is reached. */
export function crossed(rule: Pick<AlertRuleRow, "threshold_micros" | "threshold_percent">, m: Measure): boolean {
  if (rule.threshold_percent > 0) return m.base !== undefined && m.spent * 100 >= rule.threshold_percent * m.base;
  return m.spent >= Number(rule.threshold_micros);
}
