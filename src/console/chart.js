// The last hour drawn as inline SVG (built with DOM calls: the CSP allows no inline script or style):
// one small chart a measure, time on x (an hour ending now), the series' own maximum on y.
const NS = "http://www.w3.org/2000/svg";
const W = 480;
const H = 150;
const PAD = { left: 52, right: 8, top: 8, bottom: 20 };
const HOUR_MS = 3_600_000;

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** 1234567 -> "1.2M"; small values keep a decimal so a rate of 0.1/s is not drawn as 0. */
export function short(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n >= 10 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
}

/**
 * One chart: `series` is [{ key, label }] read from each point; draws a polyline a series, the y maximum,
 * and the hour's ends. Returns the chart's element (a figure holding the svg).
 */
export function drawChart(title, points, series, now) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  fig.dataset.chart = title;
  const h = document.createElement("h3");
  h.textContent = title;
  fig.append(h);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const max = Math.max(1, ...points.flatMap((p) => series.map((s) => p[s.key])));
  const x = (t) => PAD.left + ((t - (now - HOUR_MS)) / HOUR_MS) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  for (const v of [0, max / 2, max]) {
    svg.append(el("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    svg.append(el("text", { x: PAD.left - 4, y: y(v) + 3, "text-anchor": "end" }, short(v)));
  }
  svg.append(el("text", { x: PAD.left, y: H - 4 }, "-60 min"));
  svg.append(el("text", { x: (PAD.left + W - PAD.right) / 2, y: H - 4, "text-anchor": "middle" }, "-30 min"));
  svg.append(el("text", { x: W - PAD.right, y: H - 4, "text-anchor": "end" }, "now"));
  series.forEach((s, i) => {
    const pts = points
      .filter((p) => Date.parse(p.t) >= now - HOUR_MS)
      .map((p) => `${x(Date.parse(p.t)).toFixed(1)},${y(p[s.key]).toFixed(1)}`);
    svg.append(el("polyline", { class: `s${i}`, points: pts.join(" "), "data-series": s.key }));
    // The latest value as a dot: visible even when the hour holds a single sample so far.
    const last = pts.at(-1);
    if (last) {
      const [cx, cy] = last.split(",");
      svg.append(el("circle", { class: `s${i} dot`, cx, cy, r: 2.5 }));
    }
  });
  fig.append(svg);
  if (series.length > 1) {
    const legend = document.createElement("figcaption");
    legend.className = "legend";
    series.forEach((s, i) => {
      const k = document.createElement("span");
      k.className = `k${i}`;
      const last = points.at(-1);
      k.textContent = `— ${s.label}${last ? ` (now ${short(last[s.key])})` : ""}`;
      legend.append(k);
    });
    fig.append(legend);
  }
  return fig;
}
