/** The live alerts panel: account events from WatchAccountEvents, newest first. */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { AccountEvent } from "../../gen/formstate/v1/usage_service_pb.js";
import { h } from "../dom.js";
import { formatUsd } from "../money.js";

/** Events kept on screen. */
export const MAX_SHOWN = 50;

/** One line for a person: what happened, in money. */
export function describeEvent(e: AccountEvent): string {
  switch (e.payload.case) {
    case "spendAlertFired": {
      const a = e.payload.value;
      const who = a.apiKey ? `key ${a.apiKey.split("/").pop()}` : "the account";
      const threshold = a.threshold.case === "thresholdPercent" ? `${a.threshold.value}% of ${formatUsd(a.baseMicros)}` : formatUsd(a.threshold.case === "thresholdMicros" ? a.threshold.value : 0n);
      return `Spend alert${a.description ? ` "${a.description}"` : ""}: ${who} spent ${formatUsd(a.spentMicros)}, over ${threshold} (${a.period})`;
    }
    case "creditsAdded": {
      const c = e.payload.value;
      return `Credits added: ${formatUsd(c.amountMicros)}${c.reason ? ` (${c.reason})` : ""}; balance ${formatUsd(c.balanceMicros)}`;
    }
    default:
      return "An event this console does not know yet";
  }
}

/** Puts an event at the top of the list (once per id), keeping at most MAX_SHOWN. */
export function showEvent(list: HTMLElement, e: AccountEvent): void {
  if (Array.from(list.children).some((li) => (li as HTMLElement).dataset.eventId === e.id)) return;
  list.querySelector(".empty")?.remove();
  const when = e.createTime ? timestampDate(e.createTime).toISOString().slice(11, 19) : "";
  const kind = e.payload.case ?? "unknown";
  list.prepend(h("li", { "data-event-id": e.id, "data-kind": kind, class: kind === "spendAlertFired" ? "alert" : "" }, h("span", { class: "muted mono" }, `${when} UTC `), describeEvent(e)));
  while (list.children.length > MAX_SHOWN) list.lastElementChild?.remove();
}
