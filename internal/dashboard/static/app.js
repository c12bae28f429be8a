// Ward dashboard. Plain JS, no dependency; every value from the server is
// put in the page as text (textContent), never as HTML.
"use strict";

const state = { csrf: "", graph: null };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function showError(msg) {
  const p = $("error");
  p.textContent = msg;
  p.hidden = !msg;
}

async function api(path, opts) {
  opts = opts || {};
  const headers = { "Accept": "application/json" };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    headers["X-Ward-CSRF"] = state.csrf;
  }
  const resp = await fetch(path, {
    method: opts.method || "GET", headers, credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    if (resp.status === 401) { location.href = "/ui/"; }
    throw new Error((data.message || resp.statusText) + (data.code ? " (" + data.code + ")" : ""));
  }
  return data;
}

function rows(tbody, items, cells, onClick) {
  const frag = document.createDocumentFragment();
  for (const it of items) {
    const tr = el("tr", {});
    for (const c of cells(it)) tr.append(c instanceof Node ? c : el("td", {}, c));
    if (onClick) tr.addEventListener("click", () => onClick(it));
    frag.append(tr);
  }
  tbody.replaceChildren(frag);
}

// ---- service graph ----

async function loadGraph() {
  const t0 = performance.now();
  const g = await api("/ui/api/graph?since=" + encodeURIComponent($("graph-since").value));
  state.graph = g;
  drawGraph();
  const ms = performance.now() - t0;
  document.body.dataset.graphMs = ms.toFixed(1);
  document.body.dataset.graphEdges = String(g.edges ? g.edges.length : 0);
}

function edgeVisible(e, q, mark) {
  if (mark && e.mark !== mark) return false;
  return !q || e.source.includes(q) || e.dest.includes(q);
}

function layout(nodes) {
  // Grouping puts the nodes of a namespace, or of an owner, side by side
  // on the circle.
  const by = $("graph-group").value;
  const list = nodes.slice();
  if (by) list.sort((a, b) => ((a[by] || "~") + "/" + a.name).localeCompare((b[by] || "~") + "/" + b.name));
  const pos = new Map();
  const n = Math.max(list.length, 1);
  list.forEach((nd, i) => {
    const a = (2 * Math.PI * i) / n;
    pos.set(nd.name, [500 + 290 * Math.cos(a), 320 + 290 * Math.sin(a)]);
  });
  return pos;
}

function drawGraph() {
  const g = state.graph;
  if (!g) return;
  const t0 = performance.now();
  const q = $("graph-search").value.trim();
  const mark = $("graph-mark").value;
  const edges = (g.edges || []).filter((e) => edgeVisible(e, q, mark));
  const names = new Set();
  for (const e of edges) { names.add(e.source); names.add(e.dest); }
  const nodes = (g.nodes || []).filter((n) => names.has(n.name) || (!q && !mark));
  const pos = layout(nodes);
  const svg = $("graph-svg");
  const NS = "http://www.w3.org/2000/svg";
  const frag = document.createDocumentFragment();
  for (const e of edges) {
    const a = pos.get(e.source), b = pos.get(e.dest);
    if (!a || !b) continue;
    const l = document.createElementNS(NS, "line");
    l.setAttribute("x1", a[0]); l.setAttribute("y1", a[1]); l.setAttribute("x2", b[0]); l.setAttribute("y2", b[1]);
    l.setAttribute("class", e.mark);
    frag.append(l);
  }
  const labels = nodes.length <= 80;
  for (const nd of nodes) {
    const p = pos.get(nd.name);
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", p[0]); c.setAttribute("cy", p[1]); c.setAttribute("r", 4);
    const title = document.createElementNS(NS, "title");
    title.textContent = nd.name + (nd.owner ? " [owner " + nd.owner + "]" : "") + " (in " + nd.in + ", out " + nd.out + ")";
    c.append(title);
    frag.append(c);
    if (labels) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", p[0] + 6); t.setAttribute("y", p[1] + 3);
      t.textContent = nd.name;
      frag.append(t);
    }
  }
  svg.replaceChildren(frag);
  const shown = edges.slice(0, 1000);
  rows($("edges").tBodies[0], shown, (e) => [
    e.source, e.dest, el("td", { class: e.mark }, e.mark), e.count, e.rate.toFixed(2), e.errors,
    e.allowed, e.denied, e.wouldDeny, e.latencyMs.toFixed(1),
  ], openEdge);
  $("graph-stats").textContent = nodes.length + " services, " + edges.length + " edges" +
    (edges.length > shown.length ? " (table shows the first " + shown.length + ")" : "");
  document.body.dataset.filterMs = (performance.now() - t0).toFixed(1);
  document.body.dataset.visibleEdges = String(edges.length);
}

async function openEdge(e) {
  const d = $("edge-detail");
  d.hidden = false;
  d.replaceChildren(el("h3", {}, e.source + " → " + e.dest + " (" + e.mark + ")"));
  try {
    const since = encodeURIComponent($("graph-since").value);
    const det = await api("/ui/api/edge?since=" + since + "&source=" + encodeURIComponent(e.source) + "&dest=" + encodeURIComponent(e.dest));
    const t = el("table", { id: "edge-flows" }, el("thead", {}, el("tr", {}, ...["method", "path", "decision", "reason", "policy", "status", "requests"].map((h) => el("th", {}, h)))), el("tbody", {}));
    rows(t.tBodies[0], det.flows || [], (f) => [f.method, f.path, el("td", { class: f.decision === "deny" ? "denied" : f.decision === "would_deny" ? "would-deny" : "allowed" }, f.decision), f.reason || "", f.policy || "", f.class ? f.class + "xx" : "", f.count]);
    d.append(t, el("h4", {}, "Latest audit records"));
    const r = el("table", { id: "edge-records" }, el("thead", {}, el("tr", {}, ...["time", "decision", "reason", "policy", "message", "request id"].map((h) => el("th", {}, h)))), el("tbody", {}));
    rows(r.tBodies[0], det.records || [], (ev) => [ev.time, ev.decision || "", ev.reason || "", field(ev, "policy") || field(ev, "route"), field(ev, "message"), ev.requestId || ""], openRequest);
    d.append(r);
  } catch (err) { showError(err.message); }
}

// ---- why ----

function field(ev, k) { return (ev.fields && ev.fields[k]) || ""; }

function openRequest(ev) {
  if (!ev.requestId) return;
  $("why-id").value = ev.requestId;
  location.hash = "why";
  explain();
}

async function explain() {
  const id = $("why-id").value.trim();
  const out = $("why-result");
  out.replaceChildren();
  if (!id) return;
  try {
    const w = await api("/ui/api/why?request_id=" + encodeURIComponent(id));
    if (!w.records || w.records.length === 0) {
      out.append(el("p", { id: "why-none" }, "No audit record of request " + id + " in the last 7 days."));
      return;
    }
    for (const ev of w.records) {
      const dry = field(ev, "dry_run") === "true" && ev.reason !== "allowed";
      const cls = ev.decision === "deny" ? "denied" : (dry ? "would-deny" : "allowed");
      out.append(el("div", { class: "detail why-record" },
        el("h3", { class: cls }, ev.type + ": " + (ev.decision || "") + (dry ? " (dry run: would deny)" : "") + (ev.reason ? " (" + ev.reason + ")" : "")),
        el("p", {}, "caller " + (field(ev, "peer") || ev.actor || "(none)") + " → " + (ev.service || ev.subject || "") + "  " + field(ev, "method") + " " + field(ev, "path")),
        el("p", {}, "policy " + (field(ev, "policy") || field(ev, "route") || "-") + ": " + field(ev, "message")),
        el("p", { class: "muted" }, ev.time + (field(ev, "status") ? "  status " + field(ev, "status") : "") + "  request " + (ev.requestId || ""))));
    }
  } catch (err) { showError(err.message); }
}

// ---- suggestions ----

async function suggest() {
  $("suggest-diff").textContent = "";
  const q = "since=" + encodeURIComponent($("suggest-since").value) + "&service=" + encodeURIComponent($("suggest-service").value.trim());
  try {
    const s = await api("/ui/api/suggest?" + q);
    $("suggest-yaml").textContent = s.yaml || "(no allowed traffic from mesh identities in this window)";
    $("suggest-summary").textContent = s.yaml ? ("Admits the " + s.edges + " observed edges; the replay would deny " + s.wouldDeny.length + " of them." + (s.wouldDeny.length ? " " + s.wouldDeny.join("; ") : "")) : "";
    $("suggest-dryrun").hidden = !s.yaml;
  } catch (err) { showError(err.message); }
}

async function dryRun() {
  try {
    const r = await api("/ui/api/suggest/dry-run", { method: "POST", body: { yaml: $("suggest-yaml").textContent } });
    $("suggest-diff").textContent = (r.changes && r.changes.length ? "Dry run against version " + r.previous + ": " + r.changes.join(" ") + "\n" + r.diff : "Dry run: no change, the current policy already is this suggestion.");
  } catch (err) { showError(err.message); }
}

// ---- certificates, audit ----

async function loadCerts() {
  try {
    const certs = await api("/ui/api/certs?all=1");
    const soon = Date.now() + 7 * 24 * 3600 * 1000;
    const list = certs.filter((c) => c.status === "revoked" || (c.status === "valid" && Date.parse(c.notAfter) < soon));
    rows($("certs").tBodies[0], list, (c) => [c.id, c.serial, el("td", { class: c.status === "revoked" ? "denied" : "would-deny" }, c.status === "revoked" ? "revoked" : "expiring"), c.notAfter]);
  } catch (err) { showError(err.message); }
}

async function searchAudit() {
  const p = new URLSearchParams();
  for (const k of ["type", "decision", "service", "q"]) {
    const v = $("audit-" + k).value.trim();
    if (v) p.set(k, v);
  }
  try {
    const recs = await api("/ui/api/audit?" + p.toString());
    rows($("audit").tBodies[0], recs, (ev) => [ev.time, ev.type, ev.actor || "", ev.service || "", ev.decision || "", ev.reason || "", ev.requestId || ""], openRequest);
  } catch (err) { showError(err.message); }
}

// ---- navigation ----

const loaders = { graph: loadGraph, certs: loadCerts, audit: searchAudit, why: () => {}, suggest: () => {} };

function route() {
  const view = (location.hash || "#graph").slice(1);
  if (!loaders[view]) return;
  showError("");
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
  Promise.resolve(loaders[view]()).catch((err) => showError(err.message));
}

function onSubmit(id, fn) {
  $(id).addEventListener("submit", (ev) => { ev.preventDefault(); fn(); });
}

async function start() {
  const s = await api("/ui/api/session");
  state.csrf = s.csrf;
  $("who").textContent = s.operator;
  onSubmit("graph-form", loadGraph);
  onSubmit("why-form", explain);
  onSubmit("suggest-form", suggest);
  onSubmit("audit-form", searchAudit);
  $("graph-search").addEventListener("input", drawGraph);
  $("graph-mark").addEventListener("change", drawGraph);
  $("graph-group").addEventListener("change", drawGraph);
  $("suggest-dryrun").addEventListener("click", dryRun);
  $("logout").addEventListener("click", async () => {
    await api("/ui/api/logout", { method: "POST", body: {} }).catch(() => {});
    location.href = "/ui/";
  });
  window.addEventListener("hashchange", route);
  // Live updates: proxies ship flows every 10 s, the graph follows.
  setInterval(() => {
    const onGraph = (location.hash || "#graph") === "#graph";
    if (onGraph && !document.hidden && $("graph-live").checked) loadGraph().catch((err) => showError(err.message));
  }, 10000);
  route();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", () => { start().catch((err) => showError(err.message)); });
