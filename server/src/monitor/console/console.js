// natsd tenant console: polls ./console/data, derives rates from two samples, renders a
// sortable, searchable table. Text goes in with textContent only (tenant names are data).
"use strict";

const POLL_MS = 2000;
const state = { rows: [], prev: null, sortKey: "name", sortDir: 1, query: "", showSystem: false, system: "" };

const fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
function bytes(n) {
  if (n < 0) return "unlimited";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return fmt.format(n) + " " + units[i];
}
function rate(n) { return n === null ? "–" : fmt.format(n); }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// A usage bar: used against limit (limit -1 = unlimited, no bar).
function meter(used, limit) {
  const td = el("td", "bar");
  if (used === null) { td.append(el("span", "none", "no JetStream")); return td; }
  const box = el("div", "meter");
  const ratio = limit > 0 ? used / limit : 0;
  if (ratio >= 0.8) box.classList.add("bad"); else if (ratio >= 0.6) box.classList.add("warn");
  const fill = el("i");
  fill.style.width = Math.min(100, ratio * 100).toFixed(1) + "%";
  const pct = ratio * 100 < 10 ? (ratio * 100).toFixed(1) : Math.round(ratio * 100);
  const label = limit > 0 ? `${bytes(used)} / ${bytes(limit)} (${pct}%)` : `${bytes(used)} / unlimited`;
  box.append(fill, el("span", "", label));
  td.append(box);
  td.dataset.value = String(used);
  return td;
}

function num(value, cls, text) {
  const td = el("td", cls, text === undefined ? fmt.format(value) : text);
  td.dataset.value = value === null ? "" : String(value);
  return td;
}

function rowsFrom(data, prev) {
  const secs = prev ? (Date.parse(data.now) - Date.parse(prev.now)) / 1000 : 0;
  const before = new Map(prev ? prev.accounts.map(a => [a.name, a]) : []);
  return data.accounts.map(a => {
    const p = before.get(a.name);
    const per = (k) => (p && secs > 0 ? Math.max(0, a[k] - p[k]) / secs : null);
    const js = a.jetstream;
    return {
      ...a,
      in_rate: per("in_msgs"), out_rate: per("out_msgs"),
      in_bytes_rate: per("in_bytes"), out_bytes_rate: per("out_bytes"),
      storage_ratio: js ? (js.max_storage > 0 ? js.storage / js.max_storage : 0) : -1,
      memory_ratio: js ? (js.max_memory > 0 ? js.memory / js.max_memory : 0) : -1,
      streams: js ? js.streams : 0,
    };
  });
}

// The system account, and the global account when nobody uses it, are not tenants.
const isTenant = (a, system) => a.name !== system && !(a.name === "$G" && a.conns === 0);

function render() {
  const tbody = document.querySelector("#tenants tbody");
  const q = state.query.toLowerCase();
  const shown = state.rows
    .filter(r => state.showSystem || isTenant(r, state.system))
    .filter(r => !q || r.name.toLowerCase().includes(q));
  const k = state.sortKey, d = state.sortDir;
  shown.sort((a, b) => {
    const x = a[k] ?? -1, y = b[k] ?? -1;
    if (typeof x === "string") return d * x.localeCompare(y);
    return d * (x - y) || a.name.localeCompare(b.name);
  });
  const frag = document.createDocumentFragment();
  for (const r of shown) {
    const tr = el("tr");
    tr.dataset.tenant = r.name;
    if (r.name === state.system) tr.classList.add("system");
    const js = r.jetstream;
    tr.append(
      el("td", "text name", r.name),
      num(r.conns, "conns"),
      num(r.users, "users"),
      num(r.subscriptions, "subscriptions"),
      num(r.in_rate, "in-rate", rate(r.in_rate)),
      num(r.out_rate, "out-rate", rate(r.out_rate)),
      num(r.in_bytes_rate, "in-bytes-rate", r.in_bytes_rate === null ? "–" : bytes(r.in_bytes_rate)),
      num(r.out_bytes_rate, "out-bytes-rate", r.out_bytes_rate === null ? "–" : bytes(r.out_bytes_rate)),
      num(r.in_msgs, "in-msgs"),
      num(r.out_msgs, "out-msgs"),
      meter(js ? js.storage : null, js ? js.max_storage : 0),
      meter(js ? js.memory : null, js ? js.max_memory : 0),
      num(r.streams, "streams"),
      num(r.slow_consumers, "slow-consumers" + (r.slow_consumers > 0 ? " hot" : "")),
      num(r.auth_failures, "auth-failures" + (r.auth_failures > 0 ? " hot" : "")),
    );
    tr.children[10].classList.add("storage");
    tr.children[11].classList.add("memory");
    frag.append(tr);
  }
  tbody.replaceChildren(frag);
  document.querySelectorAll("#tenants th").forEach(th => {
    th.classList.toggle("sorted-asc", th.dataset.key === k && d > 0);
    th.classList.toggle("sorted-desc", th.dataset.key === k && d < 0);
  });
}

function summarize(data) {
  const tenants = data.accounts.filter(a => isTenant(a, data.system_account));
  const near = tenants.filter(a => a.jetstream && a.jetstream.max_storage > 0 && a.jetstream.storage / a.jetstream.max_storage >= 0.8).length;
  const s = document.getElementById("summary");
  s.replaceChildren(
    el("b", "", fmt.format(tenants.length)), " tenants · ",
    el("b", "", fmt.format(data.connections)), " connections · ",
    el("b", "", fmt.format(near)), " at ≥80% of JetStream storage · ",
    el("b", "", fmt.format(tenants.reduce((n, a) => n + a.slow_consumers, 0))), " slow consumers · ",
    el("b", "", fmt.format(tenants.reduce((n, a) => n + a.auth_failures, 0))), " failed logins",
  );
  document.getElementById("server").textContent = data.server_name;
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const resp = await fetch("./console/data", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const data = await resp.json();
    state.system = data.system_account;
    state.rows = rowsFrom(data, state.prev);
    state.prev = data;
    summarize(data);
    render();
    status.textContent = "updated " + new Date(data.now).toLocaleTimeString();
    status.classList.remove("error");
  } catch (err) {
    status.textContent = "cannot reach the server: " + err.message;
    status.classList.add("error");
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("search").addEventListener("input", e => { state.query = e.target.value; render(); });
  document.getElementById("show-system").addEventListener("change", e => { state.showSystem = e.target.checked; render(); });
  document.querySelectorAll("#tenants th").forEach(th => th.addEventListener("click", () => {
    const key = th.dataset.key;
    if (state.sortKey === key) state.sortDir = -state.sortDir;
    else { state.sortKey = key; state.sortDir = key === "name" ? 1 : -1; }
    render();
  }));
  poll();
});
