/* Croupier dashboard helpers: DOM building (text only, never HTML), number formats, the JSON
 * API with visible errors, and a small SVG line chart. Plain JavaScript, nothing to build. */
"use strict";

const Croupier = (() => {
  const PALETTE = ["#1f5fae", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c", "#8c564b", "#e377c2"];

  /* An element with attributes and text content (text only, never parsed as HTML). */
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function isNum(x) {
    return typeof x === "number" && Number.isFinite(x);
  }

  function num(x, digits) {
    if (!isNum(x)) return "—";
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a >= 1e6 || a < 1e-4) return x.toExponential(2);
    return String(Number(x.toPrecision(digits || 4)));
  }

  function pct(x, digits) {
    if (!isNum(x)) return "—";
    return (100 * x).toFixed(digits === undefined ? 1 : digits) + "%";
  }

  function pValue(x) {
    if (!isNum(x)) return "—";
    if (x < 1e-4) return "<0.0001";
    return x.toFixed(4);
  }

  function interval(low, high) {
    if (!isNum(low) && !isNum(high)) return "(−∞, ∞)";
    return "[" + (isNum(low) ? num(low) : "−∞") + ", " + (isNum(high) ? num(high) : "∞") + "]";
  }

  function yesNo(x) {
    if (x === null || x === undefined) return "—";
    return x ? "yes" : "no";
  }

  function date(value) {
    if (!value) return "—";
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return d.toISOString().slice(0, 16).replace("T", " ");
  }

  /* A table: columns [{label, value(row) -> text, cls(row) -> class}] */
  function table(columns, rows) {
    const t = el("table", { class: "data" });
    const head = el("tr");
    for (const c of columns) head.appendChild(el("th", { scope: "col" }, c.label));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    for (const row of rows) {
      const tr = body.appendChild(el("tr"));
      for (const c of columns) {
        const value = c.value(row);
        const td = el("td", { class: c.cls ? c.cls(row) : null });
        if (value instanceof Node) td.appendChild(value);
        else td.textContent = value === null || value === undefined ? "—" : String(value);
        tr.appendChild(td);
      }
    }
    return t;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (err) {
      throw new ApiError(0, "The service could not be reached (" + err.message + ").");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const problem = await response.json();
        detail = (problem.title ? problem.title + ": " : "") + (problem.detail || "");
      } catch (_) {
        /* not a problem document: keep the status text */
      }
      throw new ApiError(response.status, "HTTP " + response.status + " " + detail);
    }
    return response.json();
  }

  /* Show an error where the content would be: a message, never a blank page. */
  function showError(statusNode, err) {
    statusNode.className = "error";
    statusNode.setAttribute("role", "alert");
    clear(statusNode);
    statusNode.appendChild(document.createTextNode(err && err.message ? err.message : String(err)));
    if (err && (err.status === 401 || err.status === 403)) {
      statusNode.appendChild(document.createTextNode(" "));
      statusNode.appendChild(el("a", { href: "/dashboard/login" }, "Log in again"));
    }
  }

  /* ---------- SVG chart ---------- */

  function svgEl(svg, tag, attrs, text) {
    const node = document.createElementNS(svg.namespaceURI, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const err = raw / mag;
    const step = mag * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return ticks;
  }

  function timeLabel(ms, spanMs) {
    const iso = new Date(ms).toISOString();
    if (spanMs > 3 * 86400e3) return iso.slice(5, 10);
    return iso.slice(5, 10) + " " + iso.slice(11, 16);
  }

  /* Runs of consecutive indices where ok(i) holds: lines break over missing values. */
  function runs(n, ok) {
    const out = [];
    let current = [];
    for (let i = 0; i < n; i++) {
      if (ok(i)) current.push(i);
      else if (current.length) {
        out.push(current);
        current = [];
      }
    }
    if (current.length) out.push(current);
    return out;
  }

  /*
   * lineChart(svg, {times, series: [{name, values, low?, high?}], yLabel, xLabel,
   *                 log?, yDomain?, format?(y), refLines?: [{y, label}], stacked?, bandLabel?})
   * Bands (low..high) are shaded under the lines; `stacked` draws them as opaque areas.
   */
  function lineChart(svg, opts) {
    const W = 760, H = 340;
    const m = { left: 78, right: 44, top: 44, bottom: 56 };
    const pw = W - m.left - m.right, ph = H - m.top - m.bottom;
    clear(svg);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const tf = opts.log
      ? (v) => (isNum(v) && v >= 0 ? Math.log10(Math.max(v, 1e-12)) : null)
      : (v) => (isNum(v) ? v : null);
    const times = (opts.times || []).map((t) => new Date(t).getTime());

    const ys = [];
    for (const s of opts.series) {
      for (const key of ["values", "low", "high"]) {
        for (const v of s[key] || []) {
          const y = tf(v);
          if (y !== null) ys.push(y);
        }
      }
    }
    const drawable = times.length > 0 && ys.length > 0;
    for (const r of opts.refLines || []) {
      const y = tf(r.y);
      if (y !== null) ys.push(y);
    }
    let [y0, y1] = opts.yDomain ? opts.yDomain.map(tf) : [Math.min(...ys), Math.max(...ys)];
    if (!drawable || !isNum(y0) || !isNum(y1)) {
      svg.appendChild(svgEl(svg, "text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
        "No data yet: the plot appears once decisions have closed."));
      return;
    }
    if (!opts.yDomain) {
      const pad = y1 > y0 ? (y1 - y0) * 0.06 : Math.max(Math.abs(y0) * 0.1, 0.5);
      y0 -= pad;
      y1 += pad;
    }
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t1 === t0) {
      t0 -= 3600e3;
      t1 += 3600e3;
    }
    const X = (t) => m.left + ((t - t0) / (t1 - t0)) * pw;
    const Y = (y) => m.top + (1 - (y - y0) / (y1 - y0)) * ph;
    const fmt = opts.format || num;

    // grid and y ticks
    const yTicks = opts.log
      ? Array.from({ length: Math.floor(y1) - Math.ceil(y0) + 1 }, (_, i) => Math.ceil(y0) + i)
      : niceTicks(y0, y1, 6);
    const grid = svg.appendChild(svgEl(svg, "g", { class: "tick" }));
    for (const y of yTicks) {
      grid.appendChild(svgEl(svg, "line", { class: "grid", x1: m.left, x2: m.left + pw, y1: Y(y), y2: Y(y) }));
      const label = opts.log ? num(Math.pow(10, y)) : fmt(y);
      grid.appendChild(svgEl(svg, "text", { x: m.left - 6, y: Y(y) + 4, "text-anchor": "end" }, label));
    }
    // x ticks
    const nx = 4;
    for (let i = 0; i <= nx; i++) {
      const t = t0 + ((t1 - t0) * i) / nx;
      grid.appendChild(svgEl(svg, "line", { class: "axis", x1: X(t), x2: X(t), y1: m.top + ph, y2: m.top + ph + 4 }));
      const anchor = i === 0 ? "start" : i === nx ? "end" : "middle";
      grid.appendChild(svgEl(svg, "text", { x: X(t), y: m.top + ph + 19, "text-anchor": anchor }, timeLabel(t, t1 - t0)));
    }
    // axes and labels
    svg.appendChild(svgEl(svg, "line", { class: "axis", x1: m.left, x2: m.left, y1: m.top, y2: m.top + ph }));
    svg.appendChild(svgEl(svg, "line", { class: "axis", x1: m.left, x2: m.left + pw, y1: m.top + ph, y2: m.top + ph }));
    svg.appendChild(svgEl(svg, "text", { x: m.left + pw / 2, y: H - 10, "text-anchor": "middle" }, opts.xLabel || "period end (UTC)"));
    svg.appendChild(svgEl(svg, "text", { x: -(m.top + ph / 2), y: 16, transform: "rotate(-90)", "text-anchor": "middle" }, opts.yLabel || ""));

    // bands, then lines on top
    const layer = svg.appendChild(svgEl(svg, "g", { class: "data" }));
    opts.series.forEach((s, k) => {
      if (!s.low || !s.high) return;
      const color = PALETTE[k % PALETTE.length];
      const ok = (i) => tf(s.low[i]) !== null && tf(s.high[i]) !== null;
      for (const run of runs(times.length, ok)) {
        if (run.length < 2) continue;
        const upper = run.map((i) => X(times[i]).toFixed(1) + " " + Y(tf(s.high[i])).toFixed(1));
        const lower = run.slice().reverse().map((i) => X(times[i]).toFixed(1) + " " + Y(tf(s.low[i])).toFixed(1));
        layer.appendChild(svgEl(svg, "path", { class: opts.stacked ? "area" : "band", fill: color, d: "M" + upper.join(" L") + " L" + lower.join(" L") + " Z" }));
      }
    });
    for (const r of opts.refLines || []) {
      const y = tf(r.y);
      if (y === null || y < y0 || y > y1) continue;
      layer.appendChild(svgEl(svg, "line", { class: "ref", x1: m.left, x2: m.left + pw, y1: Y(y), y2: Y(y) }));
      layer.appendChild(svgEl(svg, "text", { class: "ref-label", x: m.left + pw - 4, y: Y(y) - 4, "text-anchor": "end" }, r.label));
    }
    opts.series.forEach((s, k) => {
      const color = PALETTE[k % PALETTE.length];
      const ok = (i) => tf(s.values[i]) !== null;
      for (const run of runs(times.length, ok)) {
        const pts = run.map((i) => X(times[i]).toFixed(1) + " " + Y(tf(s.values[i])).toFixed(1));
        layer.appendChild(svgEl(svg, "path", { class: "line", stroke: color, d: "M" + pts.join(" L") }));
        if (run.length === 1) {
          const i = run[0];
          layer.appendChild(svgEl(svg, "circle", { cx: X(times[i]), cy: Y(tf(s.values[i])), r: 3, fill: color }));
        }
      }
    });

    // legend along the top
    const legend = svg.appendChild(svgEl(svg, "g", { class: "legend" }));
    let lx = m.left;
    opts.series.forEach((s, k) => {
      const color = PALETTE[k % PALETTE.length];
      legend.appendChild(svgEl(svg, "rect", { x: lx, y: 12, width: 16, height: 12, fill: color }));
      legend.appendChild(svgEl(svg, "text", { x: lx + 21, y: 23 }, s.name));
      lx += 21 + s.name.length * 7.6 + 18;
    });
    if (opts.bandLabel) {
      legend.appendChild(svgEl(svg, "text", { x: lx, y: 23, class: "ref-label" }, opts.bandLabel));
    }
  }

  return { el, clear, num, pct, pValue, interval, yesNo, date, table, getJSON, showError, lineChart, isNum };
})();
