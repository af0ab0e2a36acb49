/** Usage: cost per bucket as a chart and per-model totals as a table. */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { GetUsageSummaryResponse, GetUsageTimeseriesResponse } from "../../gen/formstate/v1/usage_service_pb.js";
import { usageChart } from "../chart.js";
import { h, replace } from "../dom.js";
import { formatCount, formatUsd } from "../money.js";

export function renderUsageChart(el: HTMLElement, series: GetUsageTimeseriesResponse, hourly: boolean): void {
  const points = series.points.map((p) => ({
    start: p.startTime ? timestampDate(p.startTime) : new Date(0),
    costMicros: p.costMicros,
    requests: p.requests + p.invocations,
  }));
  replace(el, usageChart(points, hourly));
}

/** Per-model rows (highest cost first, as the server orders them), then per-agent rows. */
export function renderModelTable(tbody: HTMLElement, tfoot: HTMLElement, summary: GetUsageSummaryResponse): void {
  if (summary.models.length === 0 && summary.agents.length === 0) {
    replace(tbody, h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No usage in this range.")));
  } else {
    replace(
      tbody,
      ...summary.models.map((m) =>
        h(
          "tr",
          { "data-model": m.model },
          h("td", { class: "mono" }, m.model),
          h("td", { class: "num" }, formatCount(m.requests)),
          h("td", { class: "num" }, formatCount(m.inputTokens)),
          h("td", { class: "num" }, formatCount(m.outputTokens)),
          h("td", { class: "num cost" }, formatUsd(m.costMicros)),
        ),
      ),
      ...summary.agents.map((a) =>
        h(
          "tr",
          { "data-agent": a.agent },
          h("td", { class: "mono" }, `${a.agent} (invocations)`),
          h("td", { class: "num" }, formatCount(a.invocations)),
          h("td", { class: "num muted" }, "-"),
          h("td", { class: "num muted" }, "-"),
          h("td", { class: "num cost" }, formatUsd(a.costMicros)),
        ),
      ),
    );
  }
  const t = summary.totals;
  replace(
    tfoot,
    h(
      "tr",
      {},
      h("th", {}, "Total (models and agents)"),
      h("td", { class: "num" }, formatCount((t?.requests ?? 0n) + (t?.invocations ?? 0n))),
      h("td", { class: "num" }, formatCount(t?.inputTokens ?? 0n)),
      h("td", { class: "num" }, formatCount(t?.outputTokens ?? 0n)),
      h("td", { class: "num cost", id: "usage-total" }, formatUsd(t?.costMicros ?? 0n)),
    ),
  );
}
