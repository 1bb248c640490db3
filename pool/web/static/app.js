// gridpool dashboard: polls the pool's JSON API and renders it. Plain JS, no libraries,
// no build step. Every value from the API is written with textContent (never as HTML).
"use strict";

(function () {
  const WINDOWS = ["1m", "5m", "1h", "24h"];
  const FETCH_TIMEOUT_MS = 10000;
  const CHART_HEIGHT = 220;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STORE_KEY = "gridpool.login";

  const $ = (id) => document.getElementById(id);

  function refreshSeconds() {
    const asked = Number(new URLSearchParams(location.search).get("refresh"));
    const base = Number(document.body.dataset.refreshS) || 5;
    return Math.max(0.5, asked > 0 ? asked : base);
  }

  // ---- formatting ----------------------------------------------------------------------

  function withUnit(value, units, base) {
    let i = 0;
    while (Math.abs(value) >= base && i < units.length - 1) {
      value /= base;
      i += 1;
    }
    return value.toFixed(value >= 100 || i === 0 && Number.isInteger(value) ? 0 : 2) + " " + units[i];
  }

  function fmtHashrate(hs) {
    return withUnit(hs || 0, ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s", "ZH/s"], 1000);
  }

  function fmtDifficulty(d) {
    if (d === null || d === undefined) return "–";
    if (d < 1000) return String(Number(d.toPrecision(4)));
    return withUnit(d, ["", "k", "M", "G", "T", "P", "E"], 1000).trim();
  }

  function fmtBtc(sats) {
    return (sats / 1e8).toFixed(8);
  }

  function fmtTime(unix) {
    if (!unix) return "–";
    const date = new Date(unix * 1000);
    const ageS = Date.now() / 1000 - unix;
    return ageS < 86400 ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function shortHash(hash) {
    return hash.slice(0, 12) + "…" + hash.slice(-6);
  }

  // ---- API -----------------------------------------------------------------------------

  async function api(path, token) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
      const body = await response.json();
      if (!response.ok) {
        throw new Error(body && body.message ? body.message : "HTTP " + response.status);
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- DOM helpers ---------------------------------------------------------------------

  function setValue(id, value, text) {
    const el = $(id);
    el.dataset.value = String(value);
    el.textContent = text;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fillTable(tableId, rows, build) {
    const body = $(tableId).tBodies[0];
    const fresh = document.createElement("tbody");
    for (const item of rows) fresh.appendChild(build(item));
    body.replaceWith(fresh);
  }

  function setHashrates(prefix, rates) {
    for (const w of WINDOWS) setValue(prefix + w, rates[w], fmtHashrate(rates[w]));
  }

  // ---- renderers -----------------------------------------------------------------------

  function renderSummary(s) {
    $("chain").textContent = s.chain + " · " + s.payout_mode;
    $("simulated").hidden = !s.network.blocks_are_simulated;
    setHashrates("hashrate-", s.hashrate_hs);
    setValue("workers-online", s.workers.online, String(s.workers.online));
    setValue("workers-offline", s.workers.offline, String(s.workers.offline));
    $("accounts-active").textContent = String(s.accounts_active);
    $("sessions").textContent = s.sessions === null ? "–" : String(s.sessions);
    $("net-height").textContent = s.network.height === null ? "–" : String(s.network.height);
    $("net-difficulty").textContent = fmtDifficulty(s.network.difficulty);
    $("net-simulated").hidden = s.network.simulated_difficulty === null;
    $("net-simulated-difficulty").textContent = fmtDifficulty(s.network.simulated_difficulty);
    $("best-share").textContent = s.best_share ? fmtDifficulty(s.best_share.difficulty) : "–";
    renderBlocks(s.blocks);
  }

  function renderBlocks(blocks) {
    setValue("blocks-count", blocks.length, blocks.length ? String(blocks.length) + " recent" : "none yet");
    $("blocks-last").textContent = blocks.length ? "#" + blocks[0].height + " " + fmtTime(blocks[0].found_time) : "–";
    fillTable("blocks", blocks, (b) => {
      const tr = document.createElement("tr");
      tr.dataset.hash = b.hash;
      cell(tr, String(b.height));
      const hashCell = cell(tr, shortHash(b.hash), "mono");
      hashCell.title = b.hash;
      const status = cell(tr, b.status + (b.simulated ? " (simulated)" : ""), "status-" + b.status);
      status.dataset.simulated = String(b.simulated);
      cell(tr, String(b.confirmations), "num");
      cell(tr, fmtBtc(b.reward_sats), "num");
      cell(tr, b.site || "–");
      cell(tr, fmtTime(b.found_time));
      return tr;
    });
  }

  function renderSites(sites) {
    fillTable("sites", sites, (s) => {
      const tr = document.createElement("tr");
      tr.dataset.site = s.site || "";
      cell(tr, s.site || "(none)");
      for (const w of WINDOWS) {
        const td = cell(tr, fmtHashrate(s.hashrate_hs[w]), "num");
        td.dataset.value = String(s.hashrate_hs[w]);
      }
      cell(tr, String(s.workers.online), "num");
      cell(tr, String(s.workers.offline), "num");
      cell(tr, s.best_share ? fmtDifficulty(s.best_share.difficulty) : "–", "num");
      return tr;
    });
  }

  function svg(name, attrs, parent) {
    const el = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (parent) parent.appendChild(el);
    return el;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= value) return m * p;
    return 10 * p;
  }

  function renderChart(chart) {
    const box = $("chart");
    const width = Math.max(box.clientWidth || 800, 320);
    const pad = { left: 80, right: 10, top: 10, bottom: 24 };
    const w = width - pad.left - pad.right;
    const h = CHART_HEIGHT - pad.top - pad.bottom;
    const points = chart.points;
    const top = niceMax(Math.max(0, ...points.map((p) => p.hashrate_hs)));
    const t0 = points.length ? points[0].time : 0;
    const span = Math.max(1, (points.length ? points[points.length - 1].time : 1) - t0);
    const x = (t) => pad.left + ((t - t0) / span) * w;
    const y = (v) => pad.top + h - (v / top) * h;
    const root = svg("svg", { width, height: CHART_HEIGHT, viewBox: `0 0 ${width} ${CHART_HEIGHT}` });
    for (let i = 0; i <= 4; i += 1) {
      const v = (top * i) / 4;
      svg("line", { x1: pad.left, x2: pad.left + w, y1: y(v), y2: y(v), class: "grid" }, root);
      svg("text", { x: pad.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, root).textContent = fmtHashrate(v);
    }
    for (let t = Math.ceil(t0 / 3600) * 3600; t <= t0 + span; t += 3 * 3600) {
      const label = new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      svg("text", { x: x(t), y: CHART_HEIGHT - 6, class: "axis", "text-anchor": "middle" }, root).textContent = label;
    }
    if (points.length) {
      const line = points.map((p, i) => `${i ? "L" : "M"}${x(p.time).toFixed(1)},${y(p.hashrate_hs).toFixed(1)}`).join("");
      const base = y(0).toFixed(1);
      svg("path", { d: `${line}L${x(points[points.length - 1].time).toFixed(1)},${base}L${x(t0).toFixed(1)},${base}Z`, class: "area" }, root);
      svg("path", { d: line, class: "line" }, root);
    }
    const last = points.length ? points[points.length - 1].hashrate_hs : 0;
    svg("title", {}, root).textContent = "now: " + fmtHashrate(last);
    root.dataset.points = String(points.length);
    box.replaceChildren(root);
  }

  // ---- account panel -------------------------------------------------------------------

  function login() {
    try {
      return JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    } catch (_err) {
      return null;
    }
  }

  function showAccountError(message) {
    $("account-error").hidden = !message;
    $("account-error").textContent = message || "";
  }

  async function refreshAccount() {
    const who = login();
    $("logout").hidden = !who;
    if (!who) {
      $("account").hidden = true;
      $("accounts").hidden = true;
      return;
    }
    try {
      if (who.account) {
        await renderAccount(who.account, who.token);
      } else {
        const list = await api("/api/accounts", who.token);
        renderAccounts(list.accounts);
      }
      showAccountError("");
    } catch (err) {
      showAccountError(String(err.message || err));
    }
  }

  async function renderAccount(name, token) {
    const path = "/api/accounts/" + encodeURIComponent(name);
    const [acct, workers, payouts] = await Promise.all([
      api(path, token), api(path + "/workers", token), api(path + "/payouts", token),
    ]);
    $("accounts").hidden = true;
    $("account").hidden = false;
    $("account-name").textContent = acct.account;
    setHashrates("account-hashrate-", acct.hashrate_hs);
    $("account-balance").textContent = fmtBtc(acct.balance_sats);
    $("account-address").textContent = acct.payout_address || "(none)";
    fillTable("workers", workers.workers, (wk) => {
      const tr = document.createElement("tr");
      tr.dataset.worker = wk.worker;
      tr.dataset.online = String(wk.online);
      cell(tr, wk.worker || "(default)");
      cell(tr, wk.site || "–");
      cell(tr, wk.online ? "online" : "offline", wk.online ? "online" : "offline");
      for (const w of ["5m", "1h", "24h"]) cell(tr, fmtHashrate(wk.hashrate_hs[w]), "num");
      cell(tr, fmtTime(wk.last_share_time));
      cell(tr, wk.best_share ? fmtDifficulty(wk.best_share.difficulty) : "–", "num");
      return tr;
    });
    fillTable("payouts", payouts.payouts, (p) => {
      const tr = document.createElement("tr");
      cell(tr, String(p.height));
      cell(tr, shortHash(p.block_hash), "mono").title = p.block_hash;
      cell(tr, p.status + (p.simulated ? " (simulated)" : ""));
      cell(tr, fmtBtc(p.credited_sats), "num");
      cell(tr, fmtBtc(p.paid_sats), "num");
      return tr;
    });
  }

  function renderAccounts(rows) {
    $("account").hidden = true;
    $("accounts").hidden = false;
    fillTable("accounts-table", rows, (a) => {
      const tr = document.createElement("tr");
      tr.dataset.account = a.account || "";
      cell(tr, a.account || "–");
      for (const w of WINDOWS) cell(tr, fmtHashrate(a.hashrate_hs[w]), "num");
      cell(tr, String(a.workers.online), "num");
      cell(tr, String(a.workers.offline), "num");
      cell(tr, fmtBtc(a.balance_sats), "num");
      return tr;
    });
  }

  // ---- the loop ------------------------------------------------------------------------

  let busy = false;

  async function tick() {
    if (busy) return;
    busy = true;
    try {
      const [summary, sites, chart] = await Promise.all([
        api("/api/summary"), api("/api/sites"), api("/api/hashrate?window=24h"),
      ]);
      renderSummary(summary);
      renderSites(sites.sites);
      renderChart(chart);
      await refreshAccount();
      $("status").dataset.state = "ok";
      $("status").textContent = "live";
      $("updated").textContent = new Date().toLocaleTimeString();
    } catch (err) {
      $("status").dataset.state = "error";
      $("status").textContent = "API unreachable: " + String(err.message || err);
    } finally {
      busy = false;
    }
  }

  function start() {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      const account = $("login-account").value.trim();
      const token = $("login-token").value.trim();
      sessionStorage.setItem(STORE_KEY, JSON.stringify({ account, token }));
      $("login-token").value = "";
      refreshAccount();
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(STORE_KEY);
      showAccountError("");
      refreshAccount();
    });
    tick();
    setInterval(tick, refreshSeconds() * 1000);
  }

  start();
})();
