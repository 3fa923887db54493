// btkit serve dashboard: vanilla JS, no external resources. The token comes from the URL fragment
// (#token=…, never sent to the server in a request line) or the form, and is kept in sessionStorage.
"use strict";

const REFRESH_MS = 5000;

function token() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash);
  if (m) {
    sessionStorage.setItem("btkit-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", window.location.pathname);
  }
  return sessionStorage.getItem("btkit-token") || "";
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (res.status === 401) {
    throw Object.assign(new Error("token refused"), { unauthorized: true });
  }
  if (!res.ok) {
    throw new Error(path + ": HTTP " + res.status);
  }
  return res.json();
}

function when(ms) {
  return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 16);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function renderPositions(data) {
  const body = document.querySelector("#positions tbody");
  body.replaceChildren();
  for (const p of data.positions) {
    const tr = document.createElement("tr");
    tr.className = "position";
    tr.dataset.symbol = p.symbol;
    cell(tr, p.symbol);
    cell(tr, p.strategy);
    cell(tr, p.position, p.position);
    cell(tr, p.price_open.toPrecision(8));
    cell(tr, p.price_take_profit.toPrecision(8));
    cell(tr, p.price_stop_loss.toPrecision(8));
    cell(tr, p.cost.toFixed(2));
    cell(tr, when(p.opened_at));
    body.appendChild(tr);
  }
  document.getElementById("no-positions").hidden = data.positions.length > 0;
}

function renderEquity(data) {
  const svg = document.getElementById("equity");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const pts = data.points;
  document.getElementById("equity-now").textContent = data.equity.toFixed(2) + " " + data.currency;
  if (pts.length < 2) return;
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => ((x - x0) / (x1 - x0 || 1)) * 600;
  const sy = (y) => 195 - ((y - y0) / (y1 - y0)) * 190;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("id", "equity-line");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2a6fdb");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  line.setAttribute("points", pts.map((p) => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" "));
  svg.appendChild(line);
}

function renderStats(data) {
  const dl = document.getElementById("stats");
  dl.replaceChildren();
  const shown = [["total_signals", "closed trades"], ["win_rate", "win rate %"], ["total_pnl", "total pnl %"],
                 ["max_drawdown", "max drawdown %"], ["profit_factor", "profit factor"]];
  for (const [key, label] of shown) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    const v = data[key];
    dd.textContent = v == null ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(2);
    dl.append(dt, dd);
  }
}

function renderEvents(data) {
  const ol = document.getElementById("events");
  ol.replaceChildren();
  for (const e of data.events.slice(-30).reverse()) {
    const li = document.createElement("li");
    let text = when(e.time || e.ts) + " " + e.kind;
    if (e.kind === "signal") {
      text += " " + e.symbol + " " + e.action + " @ " + Number(e.price).toPrecision(8);
      if (e.pnl_percentage != null) text += " pnl " + e.pnl_percentage.toFixed(2) + "%";
    } else if (e.kind === "risk") {
      text += " " + e.symbol + " rejected by " + e.risk + ": " + e.note;
    } else {
      text += " " + e.where + ": " + e.error;
    }
    li.textContent = text;
    ol.appendChild(li);
  }
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const health = await fetch("/health").then((r) => r.json());
    document.getElementById("health").textContent =
      health.status + " · " + health.backend + " · last tick " + (health.last_tick_iso || "–");
    const [positions, equity, stats, logs] = await Promise.all(
      ["/api/positions", "/api/equity", "/api/stats", "/api/logs?limit=100"].map(api));
    renderPositions(positions);
    renderEquity(equity);
    renderStats(stats);
    renderEvents(logs);
    problem.hidden = true;
    document.body.dataset.loaded = "yes";
  } catch (err) {
    if (err.unauthorized) {
      document.getElementById("login").hidden = false;
    }
    problem.textContent = String(err.message || err);
    problem.hidden = false;
  }
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("btkit-token", document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  refresh();
});

token();
refresh();
setInterval(refresh, REFRESH_MS);
