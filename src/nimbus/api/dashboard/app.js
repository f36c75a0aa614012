// The nimbus dashboard: a functions list with live charts and a per-function page, polled every 2 s.
"use strict";
const POLL_MS = 2000;
const state = {timer: null, follow: true, logCursor: null, logFor: null, seenLogs: new Set()};
const $ = sel => document.querySelector(sel);
const esc = s => String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const usd = v => "$" + (v || 0).toFixed(v >= 1 || !v ? 2 : 6);

async function api(path) {
  const r = await fetch(path, {credentials: "same-origin"});
  if (r.status === 401) { showLogin(); throw new Error("unauthorized"); }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function showLogin() {
  stop();
  $("#login").hidden = false;
  $("#view").hidden = true;
  $("#logout").hidden = true;
}

async function boot() {
  const s = await (await fetch("/dashboard/api/session", {credentials: "same-origin"})).json();
  if (!s.authenticated) return showLogin();
  $("#login").hidden = true;
  $("#view").hidden = false;
  $("#user").textContent = s.authRequired ? `signed in as ${s.user}` : "authentication off";
  $("#logout").hidden = !s.authRequired;
  route();
}

$("#login-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const r = await fetch("/dashboard/api/login", {
    method: "POST", credentials: "same-origin", headers: {"content-type": "application/json"},
    body: JSON.stringify({accessKeyId: $("#key-id").value, secretAccessKey: $("#key-secret").value}),
  });
  if (!r.ok) {
    const msg = (await r.json().catch(() => ({}))).message || "Sign-in failed";
    $("#login-error").textContent = msg;
    $("#login-error").hidden = false;
    return;
  }
  $("#login-error").hidden = true;
  boot();
});
$("#logout").addEventListener("click", async () => {
  await fetch("/dashboard/api/logout", {method: "POST", credentials: "same-origin"});
  showLogin();
});
window.addEventListener("hashchange", route);

function stop() { if (state.timer) clearTimeout(state.timer); state.timer = null; }

function route() {
  stop();
  const m = location.hash.match(/^#\/fn\/(.+)$/);
  state.logCursor = null; state.seenLogs = new Set(); state.logFor = null; state.concurrency = [];
  if (m) renderFunction(decodeURIComponent(m[1])); else renderOverview();
}

function loop(fn) { stop(); state.timer = setTimeout(fn, POLL_MS); }

function series(rows, key) { return rows.map(p => ({t: p.t, v: p[key]})); }
function last(rows, key) { return rows.length ? rows[rows.length - 1][key] : null; }

// ----------------------------------------------------------------------------- functions list
async function renderOverview() {
  let data;
  try { data = await api("/dashboard/api/overview"); } catch (e) { return; }
  const view = $("#view");
  $("#server").textContent = `isolation: ${data.server.isolation} · environments: ${data.server.environments}`;
  const merged = mergeSeries(data.functions.map(f => f.series));
  const totals = data.functions.reduce((a, f) => { a.inv += f.totals.invocations; a.err += f.totals.errors; a.thr += f.totals.throttles; return a; }, {inv: 0, err: 0, thr: 0});
  view.innerHTML = `
    <h1>Functions</h1>
    <div class="cards">
      <div class="card"><div class="label">Functions</div><div class="value" id="count-functions">${data.functions.length}</div></div>
      <div class="card"><div class="label">Invocations (since start)</div><div class="value" id="total-invocations">${totals.inv}</div></div>
      <div class="card"><div class="label">Errors / Throttles</div><div class="value"><span id="total-errors">${totals.err}</span> / <span id="total-throttles">${totals.thr}</span></div></div>
      <div class="card"><div class="label">Concurrent now / limit</div><div class="value">${data.server.concurrent} / ${data.server.accountConcurrency}</div></div>
      <div class="card"><div class="label">Cost on AWS this month (${esc(data.cost.month)})</div><div class="value" id="cost-total">${usd(data.cost.total)}</div>
        <div class="muted">${data.cost.requests} requests · ${data.cost.gbSeconds.toFixed(2)} GB-s · before free tier ${usd(data.cost.gross)}</div></div>
    </div>
    <h2>All functions, live</h2>
    <div class="charts" id="overview-charts"></div>
    <h2>Functions</h2>
    <table id="functions"><thead><tr><th>Name</th><th>Runtime</th><th class="num">Memory</th><th>Arch</th>
      <th class="num">Invocations</th><th class="num">Errors</th><th class="num">Throttles</th><th class="num">Avg ms</th><th class="num">Running</th><th>Invocations/s</th></tr></thead><tbody></tbody></table>`;
  const charts = $("#overview-charts");
  charts.appendChild(Charts.panel("Invocations / s", Charts.fmt(last(merged, "invocations")), series(merged, "invocations"), {color: "#4f9dff"}));
  charts.appendChild(Charts.panel("Errors / s", Charts.fmt(last(merged, "errors")), series(merged, "errors"), {color: "#ff6b6b"}));
  charts.appendChild(Charts.panel("Throttles / s", Charts.fmt(last(merged, "throttles")), series(merged, "throttles"), {color: "#ffb84d"}));
  charts.appendChild(Charts.panel("Duration (avg ms)", Charts.fmt(last(merged, "avg_ms")), series(merged, "avg_ms"), {color: "#4cd17f"}));
  const body = $("#functions tbody");
  for (const f of data.functions) {
    const tr = document.createElement("tr");
    const avg = f.totals.invocations ? (f.totals.duration_ms_sum / f.totals.invocations).toFixed(2) : "–";
    tr.innerHTML = `<td><a href="#/fn/${encodeURIComponent(f.name)}" class="fn-link">${esc(f.name)}</a></td><td>${esc(f.runtime)}</td>
      <td class="num">${f.memory} MB</td><td>${esc(f.architecture)}</td><td class="num">${f.totals.invocations}</td>
      <td class="num">${f.totals.errors}</td><td class="num">${f.totals.throttles}</td><td class="num">${avg}</td><td class="num">${f.concurrent}</td><td></td>`;
    tr.lastElementChild.appendChild(Charts.line(series(f.series, "invocations"), {width: 160, height: 32, color: "#4f9dff"}));
    body.appendChild(tr);
  }
  loop(renderOverview);
}

function mergeSeries(list) {
  const byT = new Map();
  for (const s of list) for (const p of s) {
    const k = Math.round(p.t);
    const acc = byT.get(k) || {t: k, invocations: 0, errors: 0, throttles: 0, wsum: 0, n: 0};
    acc.invocations += p.invocations; acc.errors += p.errors; acc.throttles += p.throttles;
    if (p.avg_ms !== null) { acc.wsum += p.avg_ms * p.invocations; acc.n += p.invocations; }
    byT.set(k, acc);
  }
  return [...byT.values()].sort((a, b) => a.t - b.t).map(a => ({...a, avg_ms: a.n ? a.wsum / a.n : null}));
}

// ----------------------------------------------------------------------------- one function
async function renderFunction(name) {
  let d;
  try { d = await api(`/dashboard/api/functions/${encodeURIComponent(name)}`); } catch (e) {
    $("#view").innerHTML = `<p class="error">${esc(e.message)}</p><p><a href="#/">Back</a></p>`; return;
  }
  const c = d.config, live = d.live, s = live.series;
  const hasReserved = live.reserved !== undefined && live.reserved !== null;
  const pool = live.unreservedPool !== undefined ? live.unreservedPool : live.accountConcurrency;
  const limit = hasReserved ? live.reserved : pool;
  const pct = limit ? Math.min(100, 100 * live.concurrent / limit) : 0;
  const view = $("#view");
  if (state.logFor !== name) {
    view.innerHTML = `
      <p><a href="#/">← Functions</a></p>
      <h1 id="fn-name">${esc(c.FunctionName)}</h1>
      <div class="cards" id="fn-cards"></div>
      <h2>Live</h2><div class="charts" id="fn-charts"></div>
      <div class="two">
        <div><h2>Configuration</h2><table id="fn-config"></table></div>
        <div><h2>Concurrency</h2><div id="fn-concurrency"></div>
             <h2>Async queue</h2><div id="fn-queue"></div>
             <h2>Cost this month (on AWS, before free tier)</h2><div id="fn-cost"></div></div>
      </div>
      <div class="two">
        <div><h2>Versions</h2><table id="fn-versions"></table></div>
        <div><h2>Aliases</h2><table id="fn-aliases"></table></div>
      </div>
      <h2>Event sources</h2><table id="fn-sources"></table>
      <h2>Deployment history</h2><table id="fn-deployments"></table>
      <h2>Recent invocations</h2><table id="fn-invocations"></table>
      <div id="fn-invocation" hidden><h2>Invocation <code id="fn-invocation-id"></code> <a href="#" id="fn-invocation-close" class="muted">close</a></h2>
        <div class="logs" id="fn-invocation-logs"></div></div>
      <h2>Logs <label class="muted"><input type="checkbox" id="follow" ${state.follow ? "checked" : ""} style="display:inline;width:auto"> follow</label></h2>
      <div class="logs" id="fn-logs"></div>`;
    state.logFor = name;
    $("#follow").addEventListener("change", ev => { state.follow = ev.target.checked; });
    // A click on a request id shows that invocation's own lines (the table is redrawn every poll: delegate).
    $("#fn-invocations").addEventListener("click", ev => {
      const link = ev.target.closest("a.inv-link");
      if (!link) return;
      ev.preventDefault();
      showInvocation(name, link.dataset.rid);
    });
    $("#fn-invocation-close").addEventListener("click", ev => { ev.preventDefault(); $("#fn-invocation").hidden = true; });
  }
  const t = live.totals;
  $("#fn-cards").innerHTML = `
    <div class="card"><div class="label">Invocations</div><div class="value" id="fn-invocations-total">${t.invocations}</div></div>
    <div class="card"><div class="label">Errors</div><div class="value">${t.errors}</div></div>
    <div class="card"><div class="label">Throttles</div><div class="value">${t.throttles}</div></div>
    <div class="card"><div class="label">Cold starts</div><div class="value">${t.cold_starts}</div></div>
    <div class="card"><div class="label">Avg duration</div><div class="value">${t.invocations ? (t.duration_ms_sum / t.invocations).toFixed(2) + " ms" : "–"}</div></div>`;
  const charts = $("#fn-charts");
  charts.innerHTML = "";
  charts.appendChild(Charts.panel("Invocations / s", Charts.fmt(last(s, "invocations")), series(s, "invocations"), {color: "#4f9dff"}));
  charts.appendChild(Charts.panel("Errors / s", Charts.fmt(last(s, "errors")), series(s, "errors"), {color: "#ff6b6b"}));
  charts.appendChild(Charts.panel("Throttles / s", Charts.fmt(last(s, "throttles")), series(s, "throttles"), {color: "#ffb84d"}));
  charts.appendChild(Charts.panel("Duration (avg ms)", Charts.fmt(last(s, "avg_ms")), series(s, "avg_ms"), {color: "#4cd17f"}));
  // Concurrency is a gauge: the page keeps its own history of it, one point per poll.
  state.concurrency.push({t: Date.now() / 1000, v: live.concurrent});
  if (state.concurrency.length > 300) state.concurrency.shift();
  charts.appendChild(Charts.panel(`Concurrent executions${hasReserved ? ` (reserved ${live.reserved})` : ""}`,
    String(live.concurrent), state.concurrency, {color: "#4f9dff", min: hasReserved ? live.reserved : 1}));
  const conf = [["Runtime", c.Runtime], ["Handler", c.Handler], ["Memory", c.MemorySize + " MB"], ["Timeout", c.Timeout + " s"],
    ["Architecture", (c.Architectures || []).join(", ")], ["Code SHA-256", c.CodeSha256], ["Code size", c.CodeSize + " bytes"],
    ["Last modified", c.LastModified], ["Tracing", (c.TracingConfig || {}).Mode],
    ["Logging", c.LoggingConfig ? `${c.LoggingConfig.LogFormat} → ${c.LoggingConfig.LogGroup}` : ""],
    ["Environment", Object.keys((c.Environment || {}).Variables || {}).join(", ") || "–"]];
  $("#fn-config").innerHTML = conf.map(([k, v]) => `<tr><th>${k}</th><td><code>${esc(v)}</code></td></tr>`).join("");
  $("#fn-concurrency").innerHTML = `<p>${live.concurrent} running of ${hasReserved ? `${live.reserved} reserved` : `the unreserved pool of ${pool} (${live.unreservedConcurrent !== undefined ? live.unreservedConcurrent : "?"} in use by all unreserved functions)`}
    · account: ${live.accountConcurrent} / ${live.accountConcurrency}</p><div class="bar"><div style="width:${pct}%"></div></div>`;
  const q = d.asyncQueue;
  $("#fn-queue").innerHTML = q ? `<p>${q.depth} queued · ${q.in_flight} in delivery · ${q.delayed} waiting for retry${q.oldest_enqueued_ms ? ` · oldest ${((Date.now() - q.oldest_enqueued_ms) / 1000).toFixed(0)} s` : ""}</p>` : `<p class="muted">no async queue on this server</p>`;
  const cost = d.cost;
  $("#fn-cost").innerHTML = `<p id="fn-cost-total">${usd(cost.gross)} · ${cost.requests} requests · ${cost.gbSeconds.toFixed(3)} GB-s</p>`;
  const hourly = (d.costHourly || []).map(h => ({t: h.hour, v: h.gbSeconds}));
  if (hourly.length) {
    if (hourly.length === 1) hourly.unshift({t: hourly[0].t - 3600, v: 0});
    $("#fn-cost").appendChild(Charts.panel("GB-seconds per hour", Charts.fmt(hourly[hourly.length - 1].v), hourly, {color: "#b48cff", height: 80}));
  }
  $("#fn-versions").innerHTML = `<tr><th>Version</th><th>Code SHA-256</th><th>Description</th><th>Modified</th></tr>` +
    d.versions.map(v => `<tr><td>${esc(v.Version)}</td><td><code>${esc((v.CodeSha256 || "").slice(0, 16))}…</code></td><td>${esc(v.Description)}</td><td>${esc(v.LastModified)}</td></tr>`).join("");
  $("#fn-aliases").innerHTML = `<tr><th>Alias</th><th>Version</th><th>Weights</th></tr>` +
    (d.aliases.length ? d.aliases.map(a => `<tr><td>${esc(a.Name)}</td><td>${esc(a.FunctionVersion)}</td><td>${esc(weights(a))}</td></tr>`).join("") : `<tr><td colspan="3" class="muted">none</td></tr>`);
  const src = d.eventSources || {mappings: [], schedules: [], rules: []};
  const srcRows = [
    ...src.mappings.map(m => `<tr class="event-source"><td>queue mapping</td><td><code>${esc(m.EventSourceArn)}</code></td><td>${esc(m.State)} · batch ${esc(m.BatchSize)}</td><td><code>${esc(m.UUID)}</code></td></tr>`),
    ...src.schedules.map(x => `<tr class="event-source"><td>schedule</td><td><code>${esc(x.GroupName)}/${esc(x.Name)}</code></td><td>${esc(x.State)} · ${esc(x.ScheduleExpression)}</td><td>${x.NextFireTime ? "next " + new Date(x.NextFireTime * 1000).toLocaleString() : "–"}</td></tr>`),
    ...src.rules.map(r => `<tr class="event-source"><td>EventBridge rule</td><td><code>${esc(r.EventBusName)}/${esc(r.Name)}</code></td><td>${esc(r.State)} · ${esc(r.ScheduleExpression || "pattern")}</td><td><code>${esc(r.Target)}</code></td></tr>`)];
  $("#fn-sources").innerHTML = `<tr><th>Kind</th><th>Source</th><th>State</th><th></th></tr>` +
    (srcRows.length ? srcRows.join("") : `<tr><td colspan="4" class="muted">none (invoked directly)</td></tr>`);
  $("#fn-deployments").innerHTML = `<tr><th>When</th><th>What</th><th>Version</th><th>Code SHA-256</th><th>Who</th></tr>` +
    d.deployments.map(x => `<tr class="deployment"><td>${new Date(x.time).toLocaleString()}</td><td>${esc(x.action)}</td><td>${esc(x.version)}</td><td><code>${esc(x.codeSha256.slice(0, 16))}…</code></td><td>${esc(x.actor)}</td></tr>`).join("");
  await refreshLogs(name);
  loop(() => renderFunction(name));
}

async function showInvocation(name, rid) {
  let data;
  try { data = await api(`/dashboard/api/functions/${encodeURIComponent(name)}/invocations/${encodeURIComponent(rid)}/logs`); } catch (e) { return; }
  $("#fn-invocation-id").textContent = rid;
  const box = $("#fn-invocation-logs");
  box.innerHTML = data.events.length ? data.events.map(e => `<div class="log-line"><span class="ts">${new Date(e.timestamp).toISOString()}</span>${esc(e.message)}</div>`).join("")
    : `<p class="muted">no log lines stored for this invocation (yet)</p>`;
  $("#fn-invocation").hidden = false;
}

function weights(alias) {
  const w = (alias.RoutingConfig || {}).AdditionalVersionWeights || {};
  const parts = Object.entries(w).map(([v, x]) => `${v}: ${Math.round(x * 100)}%`);
  return parts.length ? parts.join(", ") : "–";
}

async function refreshLogs(name) {
  // Follow: ask for every event stored after the last poll's cursor (storage order, not time order: an
  // invocation's lines are stored when it ends, stamped from when it began); event ids keep repeats out.
  const after = state.logCursor !== null ? `?after=${state.logCursor}` : "";
  let data;
  try { data = await api(`/dashboard/api/functions/${encodeURIComponent(name)}/logs${after}`); } catch (e) { return; }
  if (state.logFor !== name) return;  // the page moved on while this poll was in flight
  state.logCursor = data.cursor;
  const box = $("#fn-logs");
  for (const e of data.events) {
    if (state.seenLogs.has(e.id)) continue;
    state.seenLogs.add(e.id);
    const line = document.createElement("div");
    line.className = "log-line";
    line.innerHTML = `<span class="ts">${new Date(e.timestamp).toISOString()}</span>${esc(e.message)}`;
    box.appendChild(line);
  }
  while (box.childElementCount > 1000) box.removeChild(box.firstChild);
  if (state.follow) box.scrollTop = box.scrollHeight;
  const fmtMs = v => (v === null || v === undefined) ? "" : `${v.toFixed(2)} ms`;
  $("#fn-invocations").innerHTML = `<tr><th>Request id</th><th>When</th><th>Qualifier</th><th class="num">Duration</th><th class="num">Billed</th><th class="num">Max memory</th><th class="num">Init</th><th>Status</th></tr>` +
    data.invocations.slice(0, 20).map(i => `<tr class="invocation"><td><a href="#" class="inv-link" data-rid="${esc(i.requestId)}" title="show its logs"><code>${esc(i.requestId)}</code></a></td><td>${new Date(i.time).toLocaleTimeString()}</td><td>${esc(i.qualifier)}</td><td class="num">${fmtMs(i.durationMs)}</td><td class="num">${i.billedMs} ms</td><td class="num">${i.maxMemoryMB} MB</td><td class="num">${fmtMs(i.initMs)}</td><td><span class="pill ${i.status === "success" ? "ok" : "err"}" title="${esc(i.errorType || "")}">${esc(i.status)}${i.errorType ? ": " + esc(i.errorType) : ""}</span></td></tr>`).join("");
}

boot();
