/**
 * Delivers the webhook outbox (`webhook_delivery`): claims due rows under a
 * lease (a conditional update, so two senders never post one row at once),
 * posts each body signed afresh (Formstate-Signature with the current time)
 * and records the answer. A 2xx delivers; anything else (no answer, a
 * timeout, any other status) is retried with exponential backoff and jitter
 * until `maxAttempts`, then the row is `failed` with its last error. Every
 * attempt's outcome is on the row: the delivery log ListAlertDeliveries reads.
 * A crash after the endpoint accepted but before the row is marked makes one
 * redelivery with the same event id, which receivers de-duplicate.
 */
import { backoffMs } from "../billing/outbox.js";
import type { Clock } from "../clock.js";
import type { Database } from "../db/database.js";
import { newId } from "../ids.js";
import type { Logger } from "../logger.js";
import type { DeliveryRow } from "./spend-alerts.js";
import { EVENT_ID_HEADER, SIGNATURE_HEADER, signatureHeader } from "./webhook-signature.js";
import { Periodic } from "../periodic.js";

export interface WebhookSenderDeps {
  database: Database;
  clock: Clock;
  log: Logger;
  intervalMs: number;
  backoffMs: number;
  backoffMaxMs: number;
  maxAttempts: number;
  /** Timeout of one POST, ms. */
  timeoutMs: number;
}

/** How long a claimed row is held before another sender may take it. */
const LEASE_MS = 60_000;
const BATCH = 20;

export class WebhookSender {
  readonly owner = `webhooks-${newId(10)}`;
  private readonly loop: Periodic;

  constructor(private readonly deps: WebhookSenderDeps) {
    this.loop = new Periodic(() => this.sendDue(), deps.intervalMs, (err) => deps.log.warn({ err }, "webhook delivery round failed"));
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One round: claims the due rows and posts them. Returns how many were delivered. */
  async sendDue(): Promise<number> {
    const db = this.deps.database.db;
    const now = this.deps.clock.now();
    const due = await db.selectFrom("webhook_delivery").select("delivery_id").where("state", "=", "pending").where("next_attempt_time", "<=", now).orderBy("next_attempt_time").limit(BATCH).execute();
    let delivered = 0;
    await Promise.all(
      due.map(async ({ delivery_id }) => {
        const row = await this.claim(delivery_id, now);
        if (row && (await this.post(row))) delivered++;
      }),
    );
    return delivered;
  }

  private async claim(id: string, now: number): Promise<DeliveryRow | undefined> {
    return this.deps.database.transaction(async (tx) => {
      const res = await tx
        .updateTable("webhook_delivery")
        .set({ lease_owner: this.owner, next_attempt_time: now + LEASE_MS })
        .where("delivery_id", "=", id)
        .where("state", "=", "pending")
        .where("next_attempt_time", "<=", now)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return undefined;
      return tx.selectFrom("webhook_delivery").selectAll().where("delivery_id", "=", id).executeTakeFirst();
    });
  }

  /** Posts one row and records the outcome; true when delivered. */
  private async post(row: DeliveryRow): Promise<boolean> {
    const t = Math.floor(this.deps.clock.now() / 1000);
    const rule = await this.deps.database.db.selectFrom("alert_rule").select("signing_secret").where("rule_id", "=", row.rule_id).executeTakeFirst();
    let status: number | null = null;
    let error = "";
    if (!rule) {
      error = "the spend alert was deleted before delivery";
    } else {
      try {
        const res = await fetch(row.endpoint_url, {
          method: "POST",
          headers: { "content-type": "application/json", "user-agent": "Formstate-Webhooks/1", [SIGNATURE_HEADER]: signatureHeader(rule.signing_secret, t, row.payload), [EVENT_ID_HEADER]: row.delivery_id },
          body: row.payload,
          redirect: "manual",
          signal: AbortSignal.timeout(this.deps.timeoutMs),
        });
        status = res.status;
        await res.body?.cancel();
        if (status < 200 || status > 299) error = `the endpoint answered ${status}`;
      } catch (err) {
        error = `no answer: ${(err as Error).name === "TimeoutError" ? "timed out" : ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`;
      }
    }
    const now = this.deps.clock.now();
    const attempts = row.attempts + 1;
    const ok = error === "";
    const giveUp = !ok && (attempts >= this.deps.maxAttempts || !rule);
    await this.deps.database.transaction((tx) =>
      tx
        .updateTable("webhook_delivery")
        .set({
          state: ok ? "delivered" : giveUp ? "failed" : "pending",
          attempts,
          last_status: status,
          last_error: error,
          lease_owner: null,
          deliver_time: ok ? now : null,
          next_attempt_time: ok || giveUp ? now : now + backoffMs(attempts, this.deps.backoffMs, this.deps.backoffMaxMs),
        })
        .where("delivery_id", "=", row.delivery_id)
        .where("lease_owner", "=", this.owner)
        .execute(),
    );
    if (!ok) this.deps.log.warn({ delivery: row.delivery_id, attempts, error, giveUp }, giveUp ? "webhook delivery failed for good" : "webhook delivery failed; will retry");
    return ok;
  }
}
