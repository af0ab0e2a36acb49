import { envReader } from "../config-env.js";
/** Settings of spend alerts and their webhooks (issue 18). */
export interface AlertConfig {
  /** How often spend is compared with the alert rules, ms. */
  checkIntervalMs: number;
  /** How long after a debit the project's rules are checked, ms; 0: only every checkIntervalMs. */
  checkAfterDebitMs: number;
  /** How often the webhook outbox is looked at, ms. */
  sendIntervalMs: number;
  /** First retry delay of a failed webhook, ms; it doubles per failure up to backoffMaxMs. */
  backoffMs: number;
  backoffMaxMs: number;
  /** Attempts before a webhook is given up (state failed). */
  maxAttempts: number;
  /** Timeout of one webhook POST, ms. */
  timeoutMs: number;
  /** Quiet time after which an event stream (WatchAccountEvents) sends a heartbeat, ms. */
  eventHeartbeatMs: number;
}

/** Reads the alert settings; pushes a line per bad variable into `problems`. */
export function readAlertConfig(env: NodeJS.ProcessEnv, problems: string[]): AlertConfig {
  const { int } = envReader(env, problems);
  return {
    checkIntervalMs: int("FORMSTATE_ALERT_CHECK_INTERVAL_MS", 10_000, 10, 3_600_000),
    checkAfterDebitMs: int("FORMSTATE_ALERT_CHECK_AFTER_DEBIT_MS", 200, 0, 60_000),
    sendIntervalMs: int("FORMSTATE_WEBHOOK_SEND_INTERVAL_MS", 1_000, 10, 600_000),
    backoffMs: int("FORMSTATE_WEBHOOK_BACKOFF_MS", 5_000, 10, 3_600_000),
    backoffMaxMs: int("FORMSTATE_WEBHOOK_BACKOFF_MAX_MS", 3_600_000, 10, 86_400_000),
    maxAttempts: int("FORMSTATE_WEBHOOK_MAX_ATTEMPTS", 15, 1, 100),
    timeoutMs: int("FORMSTATE_WEBHOOK_TIMEOUT_MS", 10_000, 100, 120_000),
    eventHeartbeatMs: int("FORMSTATE_EVENT_HEARTBEAT_MS", 15_000, 10, 300_000),
  };
}
