/** Publisher earnings: per resource (model or agent) over a period, with the unpaid balance and payouts. */
import type { GetPublisherEarningsResponse } from "../../gen/formstate/v1/billing_service_pb.js";
import { h, replace } from "../dom.js";
import { formatCount, formatUsd } from "../money.js";

/** The periods the view offers: calendar months in UTC, or everything. */
export type EarningsPeriod = "month" | "last-month" | "all";

/** The [start, end) of a period at `now`; undefined ends mean "open" (the server's beginning, or now). */
export function periodRange(period: EarningsPeriod, now: Date): { start?: Date; end?: Date } {
  const monthStart = (offset: number) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
  switch (period) {
    case "month":
      return { start: monthStart(0) };
    case "last-month":
      return { start: monthStart(-1), end: monthStart(0) };
    case "all":
      return {};
  }
}

const cells = (t: GetPublisherEarningsResponse["total"]) => [
  h("td", { class: "num" }, formatCount(t?.usageCount ?? 0n)),
  h("td", { class: "num" }, formatUsd(t?.grossMicros ?? 0n)),
  h("td", { class: "num" }, formatUsd(t?.platformFeeMicros ?? 0n)),
  h("td", { class: "num" }, formatUsd(t?.clawbackMicros ?? 0n)),
  h("td", { class: "num cost" }, formatUsd(t?.earningsMicros ?? 0n)),
];

/** One row per resource (highest earnings first, as the server orders them), the totals, and the balance. */
export function renderEarnings(tbody: HTMLElement, tfoot: HTMLElement, stats: HTMLElement, res: GetPublisherEarningsResponse): void {
  if (res.resources.length === 0) {
    replace(tbody, h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No earnings in this period.")));
  } else {
    replace(tbody, ...res.resources.map((r) => h("tr", { "data-resource": r.resource }, h("td", { class: "mono" }, r.resource), ...cells(r.total))));
  }
  replace(tfoot, h("tr", { id: "earnings-total" }, h("th", {}, "Total"), ...cells(res.total)));
  const stat = (label: string, value: string, id: string) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", { id }, value));
  replace(
    stats,
    stat("Earned in period", formatUsd(res.total?.earningsMicros ?? 0n), "earnings-earned"),
    stat("Paid out in period", formatUsd(res.paidOutMicros), "earnings-paid"),
    stat("Not yet paid out", formatUsd(res.balanceMicros), "earnings-balance"),
    stat("Payout account", res.stripeAccountId || "none linked", "earnings-payout-account"),
  );
}
