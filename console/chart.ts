/**
 * Usage over time as a hand-drawn SVG bar chart: one bar per bucket, height
 * proportional to cost. Pixel heights are the only place a cost becomes a
 * float; labels are formatted from the integer micros.
 */
import { formatUsd } from "./money.js";

export interface ChartPoint {
  start: Date;
  costMicros: bigint;
  requests: bigint;
}

const SVG = "http://www.w3.org/2000/svg";
const W = 640;
const H = 220;
const PAD = { left: 64, right: 12, top: 12, bottom: 28 };

function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function timeLabel(d: Date, hourly: boolean): string {
  const iso = d.toISOString();
  return hourly ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}Z` : iso.slice(0, 10);
}

/** Draws the chart; every bar carries `data-cost-micros` and a tooltip. */
export function usageChart(points: readonly ChartPoint[], hourly: boolean): SVGSVGElement {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart", "aria-label": "Cost per bucket" });
  const max = points.reduce((m, p) => (p.costMicros > m ? p.costMicros : m), 0n);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const baseline = PAD.top + plotH;

  svg.append(
    s("line", { x1: PAD.left, y1: baseline, x2: W - PAD.right, y2: baseline, class: "axis" }),
    s("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: baseline, class: "axis" }),
    s("text", { x: PAD.left - 6, y: PAD.top + 10, "text-anchor": "end", class: "tick" }, formatUsd(max)),
    s("text", { x: PAD.left - 6, y: baseline, "text-anchor": "end", class: "tick" }, "$0"),
  );
  if (points.length === 0) return svg;

  const slot = plotW / points.length;
  const barW = Math.max(1, slot * 0.8);
  points.forEach((p, i) => {
    const height = max === 0n ? 0 : (Number(p.costMicros) / Number(max)) * plotH;
    const bar = s("rect", {
      x: (PAD.left + i * slot + (slot - barW) / 2).toFixed(2),
      y: (baseline - height).toFixed(2),
      width: barW.toFixed(2),
      height: height.toFixed(2),
      class: "bar",
      "data-cost-micros": p.costMicros.toString(),
      "data-start": p.start.toISOString(),
    });
    bar.append(s("title", {}, `${timeLabel(p.start, hourly)}: ${formatUsd(p.costMicros)}, ${p.requests} requests`));
    svg.append(bar);
  });
  const first = points[0];
  const last = points[points.length - 1];
  svg.append(
    s("text", { x: PAD.left, y: H - 8, "text-anchor": "start", class: "tick" }, timeLabel(first.start, hourly)),
    s("text", { x: W - PAD.right, y: H - 8, "text-anchor": "end", class: "tick" }, timeLabel(last.start, hourly)),
  );
  if (max === 0n) svg.append(s("text", { x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, "text-anchor": "middle", class: "empty" }, "No usage in this range"));
  return svg;
}
