// dacn dashboard: loads a snapshot from the node's JSON endpoints once, then applies its /events stream.
// No framework and no build step; charts are drawn on <canvas> by hand.
"use strict";

const COLORS = ["#5b9dff", "#3ecf8e", "#f5b942", "#ff6b6b", "#b48cff", "#4dd0e1", "#ff9f68", "#a3e635",
                "#f472b6", "#94a3b8", "#facc15", "#22d3ee"];
const STATE_COLORS = {open: "#f5b942", assigned: "#5b9dff", revealing: "#4dd0e1", disputed: "#b48cff",
                      auditing: "#f472b6", confirming: "#a3e635", verified: "#3ecf8e", failed: "#ff6b6b", refunded: "#ff9f68", pending: "#8d99b3"};
const JOBS_PAGE = 100;  // jobs a page of the table loads; older ones come with "show older jobs"
const JOB_STATES = ["pending", "open", "assigned", "revealing", "disputed", "auditing", "confirming", "verified",
                    "failed", "refunded"];
const DEFAULT_PARAMS = {
  linear_regression: {}, kmeans: {k: 3}, pca: {n_components: 2},
  logistic_regression: {}, mlp_train: {epochs: 5},
};
const DEFAULT_KIND = {linear_regression: "regression", kmeans: "blobs", pca: "blobs",
                      logistic_regression: "classification", mlp_train: "classification"};

const S = {
  jobs: new Map(), workers: [], clients: [], blocks: [], peers: [], stats: null, health: null,
  selected: null, source: null, refreshTimer: null,
  jobsTotal: 0, jobsCursor: null,  // GET /jobs pages: jobs on the chain, and where the next (older) page starts
};
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
  '"': "&quot;", "'": "&#39;"}[c]));
const short = (id) => id ? (id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id) : "–";
const fmt = (n) => n === null || n === undefined ? "–" : Number(n).toLocaleString();

// ------------------------------------------------------------------------------------------------ HTTP

async function api(method, path, body) {
  const headers = {"Accept": "application/json"};
  const token = $("token").value.trim() || localStorage.getItem("dacn-token") || "";
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  let doc = null;
  try { doc = await resp.json(); } catch (e) { doc = {error: resp.statusText}; }
  if (!resp.ok) {
    const err = new Error(doc && doc.error ? doc.error : `${resp.status} ${resp.statusText}`);
    err.status = resp.status; err.doc = doc;
    throw err;
  }
  return doc;
}

function toast(text, kind) {
  const el = document.createElement("div");
  el.className = "toast " + (kind || "");
  el.textContent = text;
  $("toasts").appendChild(el);
  setTimeout(() => el.remove(), kind === "error" ? 9000 : 5000);
}

// ------------------------------------------------------------------------------------------------ snapshot

async function loadSnapshot() {
  const [health, stats, workers, clients, jobs, blocks, peers] = await Promise.all([
    api("GET", "/health"), api("GET", "/network/stats"), api("GET", "/workers"), api("GET", "/clients"),
    api("GET", `/jobs?limit=${JOBS_PAGE}`), api("GET", "/blocks?limit=60"), api("GET", "/peers"),
  ]);
  S.health = health; S.stats = stats; S.workers = workers.workers; S.clients = clients.clients;
  S.blocks = blocks.blocks.slice().reverse(); S.peers = peers.peers;
  for (const j of jobs.jobs) S.jobs.set(j.job_id, j);
  S.jobsTotal = jobs.count; S.jobsCursor = jobs.next_cursor;
  $("node-id").innerHTML = `node <code>${esc(short(health.peer_id))}</code> · chain <code>${esc(health.chain_id)}</code>`;
  renderAll();
  loadAgent();
}

async function loadAgent() {
  try {
    const st = await api("GET", "/network/coordination");
    $("agent-status").textContent = `agent: ${st.running ? "bidding on new jobs" : "stopped"} · device ` +
      `${st.device.device_kind} (${st.device.device_name}) · jobs running ${st.jobs_running.length}`;
  } catch (e) {
    $("agent-status").textContent = "agent: " + e.message;
  }
}

function scheduleRefresh() {
  // Txs in a block change balances, workers and totals: re-read them once per burst of blocks.
  if (S.refreshTimer) return;
  S.refreshTimer = setTimeout(async () => {
    S.refreshTimer = null;
    try {
      const [stats, workers, clients] = await Promise.all([
        api("GET", "/network/stats"), api("GET", "/workers"), api("GET", "/clients")]);
      S.stats = stats; S.workers = workers.workers; S.clients = clients.clients;
      renderCards(); renderWorkers(); renderClients(); drawJobStates();
    } catch (e) { console.warn("refresh failed", e); }
  }, 250);
}

// ------------------------------------------------------------------------------------------------ events

function connect() {
  if (S.source) S.source.close();
  const es = new EventSource("/events");
  S.source = es;
  es.addEventListener("hello", () => {
    setLive(true);
    loadSnapshot().catch((e) => toast("could not load the node's state: " + e.message, "error"));
  });
  es.addEventListener("block", (m) => onBlock(JSON.parse(m.data)));
  es.addEventListener("job", (m) => onJob(JSON.parse(m.data)));
  es.addEventListener("peer", (m) => onPeer(JSON.parse(m.data)));
  es.addEventListener("tx", () => {});
  es.addEventListener("dropped", () => setLive(false));
  es.onerror = () => setLive(false);  // EventSource reconnects by itself; "hello" reloads the snapshot
}

function setLive(on) {
  const el = $("live");
  el.className = "pill " + (on ? "live" : "down");
  el.textContent = on ? "live" : "reconnecting";
}

function onBlock(b) {
  const last = S.blocks[S.blocks.length - 1];
  if (last && b.height <= last.height) return;
  const gap = last && last.height === b.height - 1 ? b.time_ms - last.time_ms : null;
  S.blocks.push({height: b.height, hash: b.hash, time_ms: b.time_ms, txs: b.txs, proposer: b.proposer,
                 block_time_ms: gap, round: 0});
  if (S.blocks.length > 120) S.blocks.shift();
  if (S.stats) S.stats.height = b.height;
  renderCards(); renderBlocks(); drawChainCharts();
  if (b.txs > 0) scheduleRefresh();
}

async function onJob(ev) {
  try {
    const view = await api("GET", `/job/${ev.job_id}/status`);
    S.jobs.set(ev.job_id, view);
  } catch (e) {
    const j = S.jobs.get(ev.job_id) || {job_id: ev.job_id};
    j.status = ev.status; S.jobs.set(ev.job_id, j);
  }
  renderJobs(); drawJobStates(); scheduleRefresh();
  if (ev.status === "verified" && (S.selected === ev.job_id || !S.selected)) showResult(ev.job_id);
}

async function onPeer() {
  try { S.peers = (await api("GET", "/peers")).peers; } catch (e) { return; }
  renderPeers(); renderCards();
}

// ------------------------------------------------------------------------------------------------ rendering

function renderAll() {
  renderCards(); renderJobs(); renderWorkers(); renderClients(); renderBlocks(); renderPeers();
  drawChainCharts(); drawJobStates();
}

function blockTimes() {
  return S.blocks.filter((b) => b.block_time_ms !== null && b.block_time_ms !== undefined)
    .map((b) => [b.height, b.block_time_ms / 1000]);
}

function txRate() {
  // Committed txs per second over the last minute of blocks.
  if (S.blocks.length < 2) return null;
  const last = S.blocks[S.blocks.length - 1];
  const recent = S.blocks.filter((b) => b.time_ms >= last.time_ms - 60000);
  const first = recent[0];
  const span = (last.time_ms - first.time_ms) / 1000;
  if (span <= 0) return null;
  return recent.slice(1).reduce((n, b) => n + b.txs, 0) / span;
}

function renderCards() {
  const st = S.stats;
  if (!st) return;
  const height = S.blocks.length ? Math.max(st.height, S.blocks[S.blocks.length - 1].height) : st.height;
  $("c-workers").textContent = fmt(st.total_workers);
  $("c-workers-sub").textContent = `active ${fmt(st.active_workers)}`;
  $("c-jobs").textContent = fmt(Math.max(st.total_jobs, S.jobs.size));
  $("c-jobs-sub").textContent = `completed ${fmt(st.completed_jobs)}`;
  $("c-success").textContent = st.success_rate === null ? "–" : (st.success_rate * 100).toFixed(1) + "%";
  $("c-escrow").textContent = fmt(st.escrow_balance);
  $("c-staked").textContent = `staked ${fmt(st.total_staked)}`;
  $("c-height").textContent = fmt(height);
  $("hdr-height").textContent = fmt(height);
  $("c-chain").textContent = S.health ? S.health.chain_id : "–";
  const times = blockTimes().slice(-20);
  $("c-blocktime").textContent = times.length ?
    (times.reduce((s, t) => s + t[1], 0) / times.length).toFixed(2) + " s" : "–";
  $("c-peers").textContent = fmt(S.peers.length);
  $("c-role").textContent = S.health ? (S.health.validator ? "this node validates" : "observer") : "–";
  const tps = txRate();
  $("c-tps").textContent = tps === null ? "–" : tps.toFixed(2);
}

function badge(status) { return `<span class="badge ${esc(status)}">${esc(status)}</span>`; }

function timelineHtml(j) {
  const steps = j.timeline || [{step: "submitted", done: true}];
  return `<div class="timeline">` + steps.map((s, i) => {
    const title = s.step + (s.count !== undefined ? ` (${s.count})` : "") + (s.height ? ` @${s.height}` : "") +
      (s.note ? ` — ${s.note}` : "");
    return (i ? `<div class="bar"></div>` : "") +
      `<div class="step ${s.done ? "done" : ""} ${esc(s.step)}" title="${esc(title)}"><div class="dot"></div></div>`;
  }).join("") + `</div><div class="muted" style="font-size:10px">` +
    steps.map((s) => esc(s.step) + (s.verdict ? ` (${esc(s.verdict.replace(/_/g, " "))})` : "")).join(" → ") +
    `</div>`;
}

function renderJobs() {
  const jobs = [...S.jobs.values()].sort((a, b) => (b.submitted_at || 1e12) - (a.submitted_at || 1e12));
  const total = Math.max(S.stats ? S.stats.total_jobs : 0, S.jobsTotal, jobs.length);
  $("n-jobs").textContent = jobs.length < total ? `${fmt(jobs.length)} of ${fmt(total)}` : fmt(total);
  if (!jobs.length) { $("jobs").innerHTML = `<div class="empty">no jobs yet</div>`; return; }
  const rows = jobs.map((j) => `
    <tr class="clickable ${S.selected === j.job_id ? "selected" : ""}" data-job="${esc(j.job_id)}">
      <td class="mono" title="${esc(j.job_id)}">${esc(short(j.job_id))}</td>
      <td>${esc(j.model || "–")}</td>
      <td data-status="${esc(j.status)}">${badge(j.status || "pending")}
        ${j.waiting_for ? `<div class="why">${esc(j.waiting_for)}</div>` : ""}
        ${j.reason ? `<div class="why">${esc(j.reason)}</div>` : ""}
        ${(j.outcomes || []).filter((o) => o.outcome !== "result").map((o) =>
          `<div class="why">${esc(o.role)}: ${esc(o.words)}</div>`).join("")}
        ${j.verdict_words ? `<div class="why">${esc(j.verdict_words)}</div>` : ""}</td>
      <td>${timelineHtml(j)}</td>
      <td class="mono" title="${esc(j.worker_id)}">${esc(short(j.worker_id))}</td>
      <td class="mono" title="${esc(j.verifier_id)}">${esc(short(j.verifier_id))}</td>
      <td class="mono" title="${esc(j.referee_id)}">${esc(short(j.referee_id))}</td>
      <td>${fmt(j.reward)}</td>
    </tr>`).join("");
  $("jobs").innerHTML = `<table id="jobs-table"><thead><tr><th>job</th><th>model</th><th>status</th>
    <th>timeline</th><th>worker</th><th>verifier</th><th>referee</th><th>reward</th></tr></thead>
    <tbody>${rows}</tbody></table>` +
    (S.jobsCursor ? `<button id="jobs-more" class="secondary more">show older jobs</button>` : "");
  if (S.jobsCursor) $("jobs-more").addEventListener("click", loadOlderJobs);
  for (const tr of $("jobs").querySelectorAll("tr[data-job]")) {
    tr.addEventListener("click", () => {
      S.selected = tr.dataset.job; renderJobs();
      const j = S.jobs.get(S.selected);
      if (j && j.status === "verified") showResult(S.selected);
      else toast(`job ${short(S.selected)} is ${j ? j.status : "unknown"}: its result shows once verified`);
    });
  }
}

async function loadOlderJobs() {
  try {
    const page = await api("GET", `/jobs?limit=${JOBS_PAGE}&cursor=${encodeURIComponent(S.jobsCursor)}`);
    for (const j of page.jobs) if (!S.jobs.has(j.job_id)) S.jobs.set(j.job_id, j);
    S.jobsCursor = page.next_cursor; S.jobsTotal = page.count;
    renderJobs();
  } catch (e) { toast("could not load older jobs: " + e.message, "error"); }
}

function renderWorkers() {
  $("n-workers").textContent = S.workers.length;
  if (!S.workers.length) { $("workers").innerHTML = `<div class="empty">no workers registered</div>`; return; }
  $("workers").innerHTML = `<table><thead><tr><th>worker</th><th>device</th><th>stake</th><th>reputation</th>
    <th>jobs done / failed</th><th>active</th></tr></thead><tbody>` + S.workers.map((w) => `
    <tr><td><span class="mono" title="${esc(w.worker_id)}">${esc(short(w.worker_id))}</span>
      ${w.name ? `<div class="why">${esc(w.name)}</div>` : ""}</td>
      <td>${esc(w.device_kind)} · ${esc(w.device_name)}<div class="why">${fmt(w.memory_mb)} MB</div></td>
      <td>${fmt(w.stake)}</td><td>${fmt(w.reputation)}<span class="muted"> / 1000</span></td>
      <td>${fmt(w.jobs_done)} / ${fmt(w.jobs_failed)}</td><td>${fmt(w.active_jobs)}</td></tr>`).join("") +
    `</tbody></table>`;
}

function renderClients() {
  $("n-clients").textContent = S.clients.length;
  if (!S.clients.length) { $("clients").innerHTML = `<div class="empty">no clients yet</div>`; return; }
  $("clients").innerHTML = `<table><thead><tr><th>client</th><th>name</th><th>balance</th><th>jobs</th></tr>
    </thead><tbody>` + S.clients.map((c) => `
    <tr><td class="mono" title="${esc(c.account)}">${esc(short(c.account))}</td><td>${esc(c.name || "–")}</td>
      <td>${fmt(c.balance)}</td><td>${fmt(c.jobs_submitted)}</td></tr>`).join("") + `</tbody></table>`;
}

function renderBlocks() {
  const blocks = S.blocks.slice(-30).reverse();
  if (!blocks.length) { $("blocks").innerHTML = `<div class="empty">no blocks yet</div>`; return; }
  $("blocks").innerHTML = `<table><thead><tr><th>height</th><th>hash</th><th>txs</th><th>time</th>
    <th>proposer</th></tr></thead><tbody>` + blocks.map((b) => `
    <tr><td>${fmt(b.height)}</td><td class="mono">${esc(b.hash.slice(0, 12))}…</td><td>${fmt(b.txs)}</td>
      <td>${new Date(b.time_ms).toLocaleTimeString()}${b.block_time_ms !== null && b.block_time_ms !== undefined ?
        ` <span class="muted">+${(b.block_time_ms / 1000).toFixed(2)}s</span>` : ""}</td>
      <td class="mono" title="${esc(b.proposer)}">${esc(short(b.proposer))}</td></tr>`).join("") +
    `</tbody></table>`;
}

function renderPeers() {
  $("n-peers").textContent = S.peers.length;
  if (!S.peers.length) { $("peers").innerHTML = `<div class="empty">no peers connected</div>`; return; }
  $("peers").innerHTML = `<table><thead><tr><th>peer</th><th>direction</th><th>address</th><th>score</th>
    <th>validator</th></tr></thead><tbody>` + S.peers.map((p) => `
    <tr><td class="mono" title="${esc(p.peer_id)}">${esc(short(p.peer_id))}</td><td>${esc(p.direction)}</td>
      <td class="mono">${esc(p.remote_addr || (p.addrs || [])[0] || "–")}</td><td>${esc(p.score)}</td>
      <td>${p.validator ? "yes" : "no"}</td></tr>`).join("") + `</tbody></table>`;
}

// ------------------------------------------------------------------------------------------------ charts

function setupCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300, h = canvas.clientHeight || 180;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  return {ctx, w, h};
}

function niceStep(span, n) {
  const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

// Round bounds that hold [lo, hi], on multiples of a 1-2-5 step.
function niceRange(lo, hi, integer) {
  if (!isFinite(lo) || !isFinite(hi)) return [0, 1];
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  let step = niceStep(hi - lo, 4);
  if (integer) step = Math.max(1, Math.round(step));
  return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step, step];
}

function fmtTick(v) {
  const a = Math.abs(v);
  if (a >= 1e5 || (a > 0 && a < 1e-3)) return v.toExponential(1);
  return Number(v.toPrecision(6)).toString();
}

// Axes with gridlines at the range's step; returns a mapper from data to pixels.
function axes(ctx, w, h, xr, yr, xLabel, yLabel) {
  const L = 46, R = 12, T = 10, B = xLabel ? 30 : 20;
  const px = (x) => L + (x - xr[0]) / (xr[1] - xr[0]) * (w - L - R);
  const py = (y) => h - B - (y - yr[0]) / (yr[1] - yr[0]) * (h - T - B);
  ctx.strokeStyle = "#2a3550"; ctx.fillStyle = "#8d99b3"; ctx.lineWidth = 1;
  const ys = yr[2] || (yr[1] - yr[0]) / 4, xs = xr[2] || (xr[1] - xr[0]) / 4;
  for (let y = Math.ceil(yr[0] / ys - 1e-9) * ys; y <= yr[1] + ys / 1000; y += ys) {
    ctx.beginPath(); ctx.moveTo(L, py(y)); ctx.lineTo(w - R, py(y)); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillText(fmtTick(y), L - 5, py(y) + 3);
  }
  ctx.textAlign = "center";
  if (xLabel !== null) {
    for (let x = Math.ceil(xr[0] / xs - 1e-9) * xs; x <= xr[1] + xs / 1000; x += xs) ctx.fillText(fmtTick(x), px(x), h - B + 13);
  }
  if (xLabel) ctx.fillText(xLabel, (L + w - R) / 2, h - 3);
  if (yLabel) {
    ctx.save(); ctx.translate(10, (T + h - B) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(yLabel, 0, 0);
    ctx.restore();
  }
  return {px, py};
}

function emptyChart(canvas, text) {
  const {ctx, w, h} = setupCanvas(canvas);
  ctx.fillStyle = "#8d99b3"; ctx.textAlign = "center"; ctx.fillText(text, w / 2, h / 2);
}

function lineChart(canvas, pts, opts) {
  if (pts.length < 2) { emptyChart(canvas, "waiting for data…"); return; }
  const {ctx, w, h} = setupCanvas(canvas);
  const xr = niceRange(Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0])), true);
  const yr = niceRange(Math.min(0, ...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1])));
  const {px, py} = axes(ctx, w, h, xr, yr, opts.xLabel, opts.yLabel);
  const grad = ctx.createLinearGradient(0, 0, 0, h);
  grad.addColorStop(0, opts.color + "55"); grad.addColorStop(1, opts.color + "00");
  ctx.beginPath(); ctx.moveTo(px(pts[0][0]), py(yr[0] < 0 ? 0 : yr[0]));
  for (const p of pts) ctx.lineTo(px(p[0]), py(p[1]));
  ctx.lineTo(px(pts[pts.length - 1][0]), py(yr[0] < 0 ? 0 : yr[0])); ctx.closePath();
  ctx.fillStyle = grad; ctx.fill();
  ctx.beginPath(); ctx.strokeStyle = opts.color; ctx.lineWidth = 2;
  pts.forEach((p, i) => i ? ctx.lineTo(px(p[0]), py(p[1])) : ctx.moveTo(px(p[0]), py(p[1])));
  ctx.stroke();
}

function barSeries(canvas, pts, opts) {
  if (!pts.length) { emptyChart(canvas, "waiting for blocks…"); return; }
  const {ctx, w, h} = setupCanvas(canvas);
  const first = pts[0][0], last = pts[pts.length - 1][0];
  const xr = [first - 0.5, last + 0.5, Math.max(1, niceStep(last - first + 1, 5))];
  const yr = niceRange(0, Math.max(1, ...pts.map((p) => p[1])), true);
  const {px, py} = axes(ctx, w, h, xr, yr, opts.xLabel, opts.yLabel);
  const bw = Math.max(1, (px(1) - px(0)) * 0.7);
  ctx.fillStyle = opts.color;
  for (const p of pts) ctx.fillRect(px(p[0]) - bw / 2, py(p[1]), bw, py(0) - py(p[1]));
}

function hbars(canvas, labels, values, colors) {
  const {ctx, w, h} = setupCanvas(canvas);
  const max = Math.max(1, ...values);
  const rowH = Math.min(22, (h - 10) / labels.length);
  labels.forEach((label, i) => {
    const y = 6 + i * rowH;
    ctx.fillStyle = "#8d99b3"; ctx.textAlign = "right"; ctx.fillText(label, 72, y + rowH * 0.65);
    const bw = (w - 120) * values[i] / max;
    ctx.fillStyle = colors[i]; ctx.fillRect(80, y + 3, Math.max(values[i] ? 2 : 0, bw), rowH - 6);
    ctx.fillStyle = "#e6ebf5"; ctx.textAlign = "left"; ctx.fillText(String(values[i]), 86 + bw, y + rowH * 0.65);
  });
}

function scatter(canvas, chart) {
  const pts = chart.points;
  if (!pts.length) { emptyChart(canvas, "no points"); return; }
  const {ctx, w, h} = setupCanvas(canvas);
  const xs = pts.map((p) => p[0]).concat((chart.centres || []).map((c) => c[0]));
  const ys = pts.map((p) => p[1]).concat((chart.centres || []).map((c) => c[1]));
  const xr = niceRange(Math.min(...xs), Math.max(...xs)), yr = niceRange(Math.min(...ys), Math.max(...ys));
  const {px, py} = axes(ctx, w, h, xr, yr, chart.x_label, chart.y_label);
  for (const p of pts) {
    ctx.fillStyle = COLORS[Math.abs(Math.round(p[2] || 0)) % COLORS.length] + "cc";
    ctx.beginPath(); ctx.arc(px(p[0]), py(p[1]), 2.6, 0, 2 * Math.PI); ctx.fill();
  }
  if (chart.line) {
    ctx.strokeStyle = "#e6ebf5"; ctx.lineWidth = 2; ctx.setLineDash([6, 4]); ctx.beginPath();
    ctx.moveTo(px(chart.line[0][0]), py(chart.line[0][1])); ctx.lineTo(px(chart.line[1][0]), py(chart.line[1][1]));
    ctx.stroke(); ctx.setLineDash([]);
  }
  (chart.centres || []).forEach((c, i) => {
    const x = px(c[0]), y = py(c[1]);
    ctx.strokeStyle = "#0f1420"; ctx.lineWidth = 4;
    ctx.beginPath(); ctx.moveTo(x - 7, y - 7); ctx.lineTo(x + 7, y + 7); ctx.moveTo(x + 7, y - 7);
    ctx.lineTo(x - 7, y + 7); ctx.stroke();
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 2.5; ctx.stroke();
  });
}

function bars(canvas, chart) {
  const {ctx, w, h} = setupCanvas(canvas);
  const n = chart.values.length;
  const yr = niceRange(0, Math.max(...chart.values, 1e-9) * 1.1);
  const {py} = axes(ctx, w, h, [0, 1], yr, null, chart.y_label || "");
  const slot = (w - 54) / n;
  chart.values.forEach((v, i) => {
    const x = 44 + slot * i + slot * 0.2;
    ctx.fillStyle = COLORS[i % COLORS.length]; ctx.fillRect(x, py(v), slot * 0.6, py(0) - py(v));
    ctx.fillStyle = "#e6ebf5"; ctx.textAlign = "center";
    ctx.fillText(chart.labels[i], x + slot * 0.3, h - 8);
    ctx.fillText((v * 100).toFixed(1) + "%", x + slot * 0.3, py(v) - 4);
  });
}

function drawChainCharts() {
  lineChart($("ch-blocktime"), blockTimes(), {color: "#5b9dff", xLabel: "height", yLabel: "seconds"});
  barSeries($("ch-txs"), S.blocks.slice(-60).map((b) => [b.height, b.txs]),
            {color: "#3ecf8e", xLabel: "height", yLabel: "txs"});
}

function drawJobStates() {
  // The node's counts cover every job on the chain (the table holds only the pages loaded); submits not yet
  // committed are the table's.
  const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0]));
  Object.assign(counts, (S.stats && S.stats.jobs_by_status) || {});
  counts.pending = [...S.jobs.values()].filter((j) => j.status === "pending").length;
  hbars($("ch-jobstates"), JOB_STATES, JOB_STATES.map((s) => counts[s] || 0),
        JOB_STATES.map((s) => STATE_COLORS[s]));
}

// ------------------------------------------------------------------------------------------------ results

async function showResult(jobId) {
  let plot;
  try { plot = await api("GET", `/job/${jobId}/plot`); } catch (e) {
    toast(`result of ${short(jobId)}: ${e.message}`, "error"); return;
  }
  S.selected = jobId; renderJobs();
  $("result-panel").hidden = false;
  $("result-id").textContent = `${short(jobId)} · ${plot.model} · ${plot.n_samples}×${plot.n_features}` +
    (plot.shown < plot.n_samples ? ` (${plot.shown} points shown)` : "");
  $("result-kv").innerHTML = Object.entries(plot.metrics || {}).map(([k, v]) =>
    `<span><b>${esc(k)}</b>${esc(Array.isArray(v) ? v.map((x) => Number(x).toFixed(3)).join(", ") :
      typeof v === "number" ? Number(v.toPrecision(5)) : v)}</span>`).join("");
  const box = $("result-charts");
  box.innerHTML = "";
  for (const chart of plot.charts) {
    const wrap = document.createElement("div");
    wrap.innerHTML = `<div class="muted" style="margin-bottom:6px">${esc(chart.title)}</div>`;
    const canvas = document.createElement("canvas");
    canvas.dataset.chart = chart.kind;
    wrap.appendChild(canvas); box.appendChild(wrap);
    if (chart.kind === "scatter") scatter(canvas, chart);
    else if (chart.kind === "line") lineChart(canvas, chart.points, {color: "#f5b942", xLabel: chart.x_label,
                                                                      yLabel: chart.y_label});
    else if (chart.kind === "bars") bars(canvas, chart);
    if (chart.kind === "scatter" && chart.centres) {
      const legend = document.createElement("div");
      legend.className = "legend";
      legend.innerHTML = chart.centres.map((_, i) => `<span><i style="background:${COLORS[i % COLORS.length]}">` +
        `</i>cluster ${i}</span>`).join("") + `<span>✕ centres</span>`;
      wrap.appendChild(legend);
    }
  }
}

// ------------------------------------------------------------------------------------------------ forms

async function withButton(form, fn) {
  const btn = form.querySelector("button[type=submit]");
  btn.disabled = true;
  try { await fn(); } catch (e) { toast(e.message, "error"); } finally { btn.disabled = false; }
}

function formValues(form) { return Object.fromEntries(new FormData(form).entries()); }

function setupForms() {
  $("f-worker").addEventListener("submit", (ev) => {
    ev.preventDefault();
    withButton(ev.target, async () => {
      const v = formValues(ev.target);
      const res = await api("POST", "/worker/register", {worker_id: v.worker_id, gpu_type: v.gpu_type,
        compute_capacity: Number(v.compute_capacity || 0), stake_amount: Number(v.stake_amount)});
      toast(`worker ${v.worker_id} ${res.status === "committed" ? "registered at height " + res.height :
        "submitted"}`, "ok");
      scheduleRefresh();
    });
  });
  $("f-client").addEventListener("submit", (ev) => {
    ev.preventDefault();
    withButton(ev.target, async () => {
      const v = formValues(ev.target);
      const res = await api("POST", "/client/register", {client_address: v.client_address,
        initial_balance: Number(v.initial_balance || 0)});
      toast(`client ${v.client_address}: balance ${fmt(res.balance)}`, "ok");
      const jobClient = $("f-job").elements["client_address"];
      if (!jobClient.value) jobClient.value = v.client_address;
      scheduleRefresh();
    });
  });
  $("model").addEventListener("change", () => {
    const m = $("model").value;
    $("params").value = JSON.stringify(DEFAULT_PARAMS[m] || {});
    $("kind").value = DEFAULT_KIND[m] || "regression";
  });
  $("source").addEventListener("change", () => {
    const csv = $("source").value === "csv";
    $("csv-fields").hidden = !csv; $("synthetic-fields").hidden = csv;
  });
  $("f-job").addEventListener("submit", (ev) => {
    ev.preventDefault();
    withButton(ev.target, async () => {
      const form = ev.target, v = formValues(form);
      let params;
      try { params = v.params.trim() ? JSON.parse(v.params) : {}; } catch (e) {
        throw new Error("parameters: not valid JSON (" + e.message + ")");
      }
      let dataset;
      if (v.source === "csv") {
        const file = form.elements["csv"].files[0];
        if (!file) throw new Error("choose a CSV file, or pick a synthetic dataset");
        dataset = {csv: await file.text()};
        const t = (v.target_column || "").trim();
        if (t) dataset.target_column = /^\d+$/.test(t) ? Number(t) : t;
      } else {
        dataset = {synthetic: {kind: v.kind, n_samples: Number(v.n_samples), n_features: Number(v.n_features),
                               seed: Math.floor(Math.random() * 1e6)}};
      }
      const res = await api("POST", "/job/submit?wait=0", {client_address: v.client_address,
        model_type: v.model_type, reward: Number(v.reward), params, dataset});
      if (!S.jobs.has(res.job_id)) {
        S.jobs.set(res.job_id, {job_id: res.job_id, model: res.model_type, status: "pending",
          reward: Number(v.reward), waiting_for: "the submit transaction to be committed"});
      }
      S.selected = res.job_id;
      renderJobs(); drawJobStates();
      toast(`job ${short(res.job_id)} submitted`, "ok");
    });
  });
  const control = (id, path, what) => $(id).addEventListener("click", async () => {
    try { const r = await api("POST", path); toast(r.message || what, "ok"); loadAgent(); } catch (e) {
      toast(`${what}: ${e.message}`, "error");
    }
  });
  control("b-start", "/network/coordination/start", "start");
  control("b-stop", "/network/coordination/stop", "stop");
  control("b-trigger", "/network/coordination/trigger", "trigger");
  $("token").value = localStorage.getItem("dacn-token") || "";
  $("token").addEventListener("change", () => localStorage.setItem("dacn-token", $("token").value.trim()));
}

window.addEventListener("resize", () => { drawChainCharts(); drawJobStates(); });
setupForms();
connect();
