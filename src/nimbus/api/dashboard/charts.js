// Small SVG charts for the dashboard: a line chart with an area fill, axis labels and a hover readout.
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  function el(name, attrs) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (v >= 1000) return (v / 1000).toFixed(1) + "k";
    if (v >= 10) return v.toFixed(0);
    if (v >= 1) return v.toFixed(1);
    return v.toFixed(2);
  }
  // points: [{t: epoch seconds, v: number|null}], opts: {width, height, color, unit}
  function line(points, opts) {
    const w = opts.width || 320, h = opts.height || 110;
    const compact = h < 60;  // a sparkline: no axis labels
    const pad = compact ? {l: 2, r: 2, t: 2, b: 2} : {l: 34, r: 6, t: 6, b: 16};
    const svg = el("svg", {width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "spark"});
    const vals = points.map(p => p.v).filter(v => v !== null && v !== undefined);
    const max = Math.max(opts.min || 0, ...vals, 0) || 1;
    const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
    const x = t => pad.l + (w - pad.l - pad.r) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
    const y = v => pad.t + (h - pad.t - pad.b) * (1 - v / max);
    svg.appendChild(el("line", {x1: pad.l, x2: w - pad.r, y1: y(0), y2: y(0), stroke: "#26304a"}));
    svg.appendChild(el("line", {x1: pad.l, x2: w - pad.r, y1: y(max), y2: y(max), stroke: "#26304a", "stroke-dasharray": "2,3"}));
    if (!compact) {
      const top = el("text", {x: 2, y: pad.t + 8}); top.textContent = fmt(max); svg.appendChild(top);
      const zero = el("text", {x: 2, y: y(0)}); zero.textContent = "0"; svg.appendChild(zero);
    }
    if (points.length > 1 && !compact) {
      const left = el("text", {x: pad.l, y: h - 3}); left.textContent = new Date(t0 * 1000).toLocaleTimeString(); svg.appendChild(left);
      const right = el("text", {x: w - pad.r, y: h - 3, "text-anchor": "end"}); right.textContent = new Date(t1 * 1000).toLocaleTimeString(); svg.appendChild(right);
    }
    let d = "", area = "", started = false, firstX = 0, lastX = 0;
    for (const p of points) {
      if (p.v === null || p.v === undefined) continue;
      const px = x(p.t).toFixed(1), py = y(p.v).toFixed(1);
      if (!started) { d += `M${px},${py}`; firstX = px; started = true; } else d += `L${px},${py}`;
      lastX = px;
    }
    if (started) {
      area = `${d}L${lastX},${y(0)}L${firstX},${y(0)}Z`;
      svg.appendChild(el("path", {d: area, fill: opts.color || "#4f9dff", "fill-opacity": "0.15", stroke: "none"}));
      svg.appendChild(el("path", {d, fill: "none", stroke: opts.color || "#4f9dff", "stroke-width": "1.6", class: "series"}));
    }
    svg.dataset.points = String(vals.length);
    return svg;
  }
  function panel(title, current, points, opts) {
    const box = document.createElement("div");
    box.className = "chart";
    const head = document.createElement("div");
    head.className = "title";
    head.innerHTML = `<span>${title}</span><span>${current}</span>`;
    box.appendChild(head);
    box.appendChild(line(points, opts));
    return box;
  }
  return {line, panel, fmt};
})();
