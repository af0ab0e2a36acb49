/**
 * The account card: plan, subscription, credit balance, agent slots and key
 * quota. A test-mode project says so and shows its sandbox balance (it has no
 * live one: docs/test-mode.md).
 */
import type { Account } from "../../gen/formstate/v1/account_service_pb.js";
import { KeyEnvironment } from "../../gen/formstate/v1/api_key_service_pb.js";
import type { Quota } from "../../gen/formstate/v1/common_pb.js";
import { h, replace } from "../dom.js";
import { planLabel, subscriptionLabel } from "../labels.js";
import { formatUsd } from "../money.js";

function quota(q: Quota | undefined): string {
  if (!q) return "-";
  return q.unlimited ? `${q.used} used, unlimited` : `${q.used} of ${q.limit}`;
}

export function renderAccount(el: HTMLElement, account: Account): void {
  const row = (label: string, value: string, id: string) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", { id }, value));
  const testMode = account.environment === KeyEnvironment.TEST;
  replace(
    el,
    h("h2", {}, account.displayName || account.projectId, testMode && h("span", { id: "account-mode", class: "mode" }, " · test mode")),
    h(
      "dl",
      { class: "stats" },
      row("Project", account.projectId, "account-project"),
      row("Plan", planLabel(account.planTier), "account-plan"),
      row("Subscription", subscriptionLabel(account.subscriptionStatus), "account-subscription"),
      testMode ? row("Sandbox credits", formatUsd(account.testCreditBalanceMicros), "account-credits") : row("Credits", formatUsd(account.creditBalanceMicros), "account-credits"),
      row("Agent slots", quota(account.agentSlots), "account-slots"),
      row("API keys", quota(account.apiKeys), "account-keys"),
    ),
  );
}
