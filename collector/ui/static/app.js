// skewwatch web view: the fleet, workload, diff and pod pages, filled from the collector's
// JSON API (/api/v1) and nothing else. The pages and their DOM hooks: docs/ui.md.
//
// Every string from the API reaches the DOM through text nodes, textContent or setAttribute
// (see h() below): fact values are written by the pods an agent watches, so they are never parsed
// as HTML. This file uses no innerHTML, outerHTML, insertAdjacentHTML or document.write
// (tests/collector/test_ui_routes.py checks it).
//
// Nothing the API decides is decided again here: states, majorities, differences and
// provenance are the API's fields; the pages only sort, filter, label and draw them.

const TOKEN_KEY = "skewwatch.token"; // sessionStorage only: never localStorage, a cookie or a URL
const main = document.getElementById("main");
const logout = document.getElementById("logout");

// The API's drift_state values and the fleet page's words for them.
const STATE_LABELS = {
  in_intent: "in intent",
  drifting: "drifting",
  no_intent: "no intent",
  no_baseline: "no baseline",
};

class AuthNeeded extends Error {}

class ApiFailure extends Error {}

// h("tag", {attr: value, class: "x", dataset...}, child...): an element whose children are nodes
// or strings (strings become text nodes, never markup).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

// A value as text: strings as they are (a secret is the API's redacted:sha256:… string), others
// as JSON.
function show(value) {
  if (value === undefined) return "—";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

// A measurement as text: six significant digits (the API's value is in the title of its cell).
function num(value) {
  return typeof value === "number" && !Number.isInteger(value) ? String(+value.toPrecision(6)) : show(value);
}

function when(ts) {
  if (ts === null || ts === undefined) return "—";
  return new Date(ts * 1000).toISOString().replace(".000", "").replace("T", " ");
}

function provenanceText(p) {
  if (!p) return "";
  const parts = [`source: ${p.source}`, `method: ${p.method}`];
  if (p.detail) parts.push(`detail: ${p.detail}`);
  if (p.inputs && p.inputs.length) parts.push(`inputs: ${p.inputs.join(", ")}`);
  return parts.join("; ");
}

function seg(s) {
  return encodeURIComponent(s);
}

function workloadHref(w) {
  return `/ui/workloads/${seg(w.namespace)}/${seg(w.name)}?kind=${seg(w.kind)}`;
}

function podHref(namespace, pod) {
  return `/ui/pods/${seg(namespace)}/${seg(pod)}`;
}

function diffHref(workload, query) {
  return `/ui/diff?workload=${seg(workload)}&${query}`;
}

// -- the API ---------------------------------------------------------------------------------

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers, credentials: "omit", cache: "no-store" });
  if (r.status === 401) throw new AuthNeeded();
  let body = null;
  try {
    body = await r.json();
  } catch {
    throw new ApiFailure(`${path}: HTTP ${r.status}, not JSON`);
  }
  if (!r.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${r.status}`;
    throw new ApiFailure(message);
  }
  return body;
}

function setPage(page, state) {
  main.dataset.page = page;
  main.dataset.state = state;
}

function render(page, ...nodes) {
  main.replaceChildren(append(document.createDocumentFragment(), nodes));
  setPage(page, "ready");
}

function showError(page, message) {
  main.replaceChildren(h("h1", {}, "Error"), h("p", { id: "error", role: "alert" }, message));
  setPage(page, "error");
}

function showLogin(page, failed) {
  const input = h("input", {
    id: "token", type: "password", name: "token", autocomplete: "off", required: true,
  });
  const form = h(
    "form",
    { id: "login" },
    h("h1", {}, "Sign in"),
    h("p", {}, failed
      ? "That token was refused. The collector needs an API token of role read or admin."
      : "This collector needs an API token (role read or admin). It is kept in this browser tab's session only."),
    h("label", { for: "token" }, "API token"),
    input,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    route();
  });
  main.replaceChildren(form);
  setPage(page, "auth");
  input.focus();
}

function updateLogout() {
  logout.hidden = !sessionStorage.getItem(TOKEN_KEY);
}

logout.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  updateLogout();
  route();
});

// -- fleet -----------------------------------------------------------------------------------

function findingsCell(byCategory) {
  const cats = Object.entries(byCategory || {});
  if (!cats.length) return "none";
  return cats.map(([cat, sev]) =>
    h("span", { class: "cat" }, `${cat}: `,
      Object.entries(sev).map(([s, n]) => h("span", { class: `badge s-${s}` }, `${n} ${s}`)), " "));
}

async function fleetPage() {
  const data = await api("/api/v1/workloads");
  const rows = data.workloads;
  const counts = Object.fromEntries(Object.keys(STATE_LABELS).map((s) => [s, 0]));
  for (const w of rows) counts[w.drift_state] = (counts[w.drift_state] || 0) + 1;

  const filter = h("input", { id: "filter", type: "search", placeholder: "namespace or name", autocomplete: "off" });
  const stateFilter = h("select", { id: "state-filter" },
    h("option", { value: "" }, "all"),
    Object.entries(STATE_LABELS).map(([v, label]) => h("option", { value: v }, label)));

  const body = document.createElement("tbody");
  const index = [];
  const frag = document.createDocumentFragment();
  for (const w of rows) {
    const label = STATE_LABELS[w.drift_state] || w.drift_state;
    const tr = h("tr", { "data-workload": w.workload, "data-state": w.drift_state },
      h("td", { "data-col": "name" }, h("a", { href: workloadHref(w) }, `${w.namespace}/${w.name}`),
        h("span", { class: "muted" }, ` ${w.kind}`)),
      h("td", { "data-col": "state" }, h("span", { class: `badge s-${w.drift_state.replace(/_/g, "-")}` }, label)),
      h("td", { "data-col": "findings" }, findingsCell(w.open_findings_by_category),
        w.silenced_findings ? h("span", { class: "muted" }, ` (${w.silenced_findings} silenced)`) : null),
      h("td", { "data-col": "replicas" }, String(w.replicas_live)),
      h("td", { "data-col": "silent" }, String(w.silent_pods)),
    );
    index.push([tr, `${w.namespace}/${w.name} ${w.workload}`.toLowerCase(), w.drift_state]);
    frag.append(tr);
  }
  body.append(frag);

  const empty = h("p", { id: "fleet-empty", hidden: rows.length > 0 }, "No workload matches.");
  function apply() {
    const q = filter.value.trim().toLowerCase();
    const s = stateFilter.value;
    let shown = 0;
    for (const [tr, text, state] of index) {
      const visible = (!q || text.includes(q)) && (!s || state === s);
      tr.hidden = !visible;
      if (visible) shown += 1;
    }
    empty.hidden = shown > 0;
  }
  filter.addEventListener("input", apply);
  stateFilter.addEventListener("change", apply);

  render("fleet",
    h("h1", {}, "Fleet"),
    h("ul", { id: "summary", "aria-label": "workloads per state" },
      h("li", {}, `${rows.length} workloads`),
      Object.entries(STATE_LABELS).map(([s, label]) =>
        h("li", { "data-state": s }, h("span", { class: `badge s-${s.replace(/_/g, "-")}` }, `${label}: ${counts[s]}`)))),
    data.truncated ? h("p", { class: "muted" }, `Showing ${data.truncated.limit} of ${data.truncated.total} workloads (the API's list limit).`) : null,
    h("div", { class: "controls", role: "search" },
      h("label", { for: "filter" }, "Search", filter),
      h("label", { for: "state-filter" }, "State", stateFilter)),
    h("table", { id: "workloads" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Workload"), h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Open findings"), h("th", { scope: "col" }, "Replicas"),
        h("th", { scope: "col" }, "Agents silent"))),
      body),
    empty,
  );
}

// -- workload --------------------------------------------------------------------------------

function sparkline(values, label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 24");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const title = document.createElementNS(SVG, "title");
  title.textContent = label;
  svg.append(title);
  const pts = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (pts.length > 1) {
    const lo = Math.min(...pts);
    const hi = Math.max(...pts);
    const span = hi - lo || 1;
    const step = 118 / (pts.length - 1);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points",
      pts.map((v, i) => `${(1 + i * step).toFixed(1)},${(22 - ((v - lo) / span) * 20).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  return svg;
}

function perPod(replicas, name) {
  const parts = replicas
    .filter((r) => r.observations && name in r.observations)
    .map((r) => `${r.pod}: ${num(r.observations[name])}`);
  return parts.length ? parts.join("; ") : "—";
}

async function workloadPage(namespace, name, kind) {
  const q = kind ? `?kind=${seg(kind)}` : "";
  const w = await api(`/api/v1/workloads/${seg(namespace)}/${seg(name)}${q}`);
  const id = w.workload;

  // The pod history's observation windows of one replica (the first of the majority) draw the plots.
  const plotted = w.replicas.find((r) => r.in_majority) || w.replicas[0];
  let series = [];
  if (plotted) {
    const hist = await api(`/api/v1/pods/${seg(w.namespace)}/${seg(plotted.pod)}/history?limit=1&observations=60`);
    series = (hist.observations || []).slice().reverse(); // oldest first
  }

  const checks = w.intent.checks.filter((c) => c.status !== "documentary" && c.status !== "ignored");
  const intentRows = checks.map((c) => {
    const key = c.target || c.field;
    const actual = c.target && c.target in w.facts ? show(w.facts[c.target]) : "—";
    const pods = Object.entries(c.pods || {}).map(([p, v]) => `${p}: ${show(v)}`);
    return h("tr", { "data-key": key },
      h("td", { class: "key" }, key, h("div", { class: "muted" }, `${c.intent} ${c.field}${c.line ? ` (line ${c.line})` : ""}`)),
      h("td", { class: "expected" }, show(c.expected)),
      h("td", { class: "actual", title: provenanceText(w.provenance[c.target]) },
        actual, pods.length ? h("div", {}, pods.join("; ")) : null),
      h("td", { class: "status" }, h("span", { class: `badge s-${c.status}` }, c.status)),
      h("td", { class: "detail muted" }, c.detail || ""));
  });

  const replicaRows = w.replicas.map((r) =>
    h("tr", { "data-pod": r.pod, "data-majority": String(r.in_majority) },
      h("td", { class: "pod" }, h("a", { href: podHref(w.namespace, r.pod) }, r.pod)),
      h("td", { class: "majority" }, r.in_majority ? "majority" : "differs"),
      h("td", { class: "disagree" }, (r.differs || []).join(", ")),
      h("td", { class: "last-seen" }, when(r.last_seen)),
      h("td", {}, r.in_majority || !w.replicas.find((o) => o.in_majority) ? "" :
        h("a", { class: "diff-link", href: diffHref(id, `pods=${seg(w.replicas.find((o) => o.in_majority).pod)},${seg(r.pod)}`) },
          "diff against the majority"))));

  const baseline = w.baseline;
  const perf = baseline && Object.keys(baseline.performance).length ? baseline.performance : null;
  const metricNames = perf ? Object.keys(perf)
    : [...new Set(w.replicas.flatMap((r) => Object.keys(r.observations || {})))].sort();
  const load = baseline ? Object.entries(baseline.load).map(([k, v]) => `${k} ${num(v)}`).join(", ") : "";
  const perfRows = metricNames.map((m) =>
    h("tr", { "data-metric": m },
      h("th", { scope: "row" }, m),
      h("td", { class: "baseline", title: perf && m in perf ? show(perf[m]) : null }, perf && m in perf ? num(perf[m]) : "—"),
      h("td", { class: "current" }, perPod(w.replicas, m)),
      h("td", { class: "load" }, baseline ? `baseline at ${load || "—"}; now ${perPod(w.replicas, "requests_per_s")} requests/s` : "no baseline"),
      h("td", { class: "plot" }, sparkline(series.map((o) => o.values[m]),
        `${m}${plotted ? ` on ${plotted.pod}` : ""}, last ${series.length} windows`))));

  const findings = w.findings.map((f) =>
    h("li", { "data-finding": f.id, "data-status": f.status },
      h("strong", { class: "key" }, f.key), " ",
      h("span", { class: `badge s-${f.severity} severity` }, f.severity), " ",
      h("span", { class: "status" }, f.status), " ",
      h("span", { class: "category muted" }, f.category),
      h("div", { class: "seen muted" }, `first seen ${when(f.first_seen)}, last seen ${when(f.last_seen)}`),
      h("div", { class: "message" }, f.message),
      f.hint ? h("div", { class: "hint" }, `Hint: ${f.hint}`) : null));

  render("workload",
    h("h1", {}, `${w.namespace}/${w.name}`),
    h("p", { class: "muted" }, `${w.kind} · ${w.replicas_live} live replicas · ${w.state}`,
      w.intent.bound.length ? ` · intents: ${w.intent.bound.map((b) => `${b.kind}/${b.name}`).join(", ")}` : " · no intent bound"),
    h("nav", { class: "diff-links", "aria-label": "diffs" },
      h("a", { class: "diff-link", href: diffHref(id, "last_good=1") }, "Diff: last good → current"),
      h("a", { class: "diff-link", href: diffHref(id, "baseline=1") }, "Diff: baseline → current"),
      h("a", { class: "diff-link", href: diffHref(id, "intent=1") }, "Diff: intent → running")),
    h("section", { id: "intent-section" },
      h("h2", {}, "Intent vs running"),
      checks.length ? null : h("p", { class: "muted" }, "No intent field is checked for this workload."),
      h("table", { id: "intent" },
        h("thead", {}, h("tr", {}, h("th", {}, "Fact"), h("th", {}, "Expected"), h("th", {}, "Running"),
          h("th", {}, "Status"), h("th", {}, "Detail"))),
        h("tbody", {}, intentRows))),
    h("section", { id: "replicas-section" },
      h("h2", {}, "Replicas"),
      h("table", { id: "replicas" },
        h("thead", {}, h("tr", {}, h("th", {}, "Pod"), h("th", {}, "Configuration"),
          h("th", {}, "Differs from the majority on"), h("th", {}, "Last seen"), h("th", {}, "Diff"))),
        h("tbody", {}, replicaRows))),
    h("section", { id: "performance" },
      h("h2", {}, "Performance"),
      h("p", { class: "muted" }, baseline
        ? `Baseline ${baseline.id} (${baseline.origin}) recorded ${when(baseline.recorded_at)}.`
        : "No baseline recorded."),
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Metric"), h("th", {}, "Baseline"), h("th", {}, "Current"),
          h("th", {}, "Load"), h("th", {}, "Recent"))),
        h("tbody", {}, perfRows))),
    h("section", { id: "findings-section" },
      h("h2", {}, "Findings"),
      w.findings.length ? null : h("p", { class: "muted" }, "No findings."),
      h("ol", { id: "findings" }, findings)),
  );
}

// -- diff ------------------------------------------------------------------------------------

const DIFF_PARAMS = ["workload", "last_good", "baseline", "intent", "revisions", "pods", "kind"];

async function diffPage(params) {
  const query = new URLSearchParams();
  for (const k of DIFF_PARAMS) if (params.has(k)) query.set(k, params.get(k));
  const d = await api(`/api/v1/diff?${query}`);
  const prov = d.provenance || { from: {}, to: {} };
  const byCategory = new Map();
  for (const c of d.changes) {
    if (!byCategory.has(c.category)) byCategory.set(c.category, []);
    byCategory.get(c.category).push(c);
  }
  const [ns, , name] = d.workload.split("/");
  const sections = [...byCategory.entries()].map(([cat, changes]) =>
    h("section", { "data-category": cat },
      h("h2", {}, cat),
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Fact"), h("th", {}, "Change"), h("th", {}, "Left"), h("th", {}, "Right"))),
        h("tbody", {}, changes.map((c) =>
          h("tr", { "data-key": c.key, "data-change": c.change },
            h("th", { scope: "row", class: "key" }, c.key),
            h("td", { class: "change" }, c.change),
            h("td", { class: "left", title: provenanceText(prov.from[c.key]) || "no provenance on this side" },
              c.change === "added" ? "—" : show(c.before)),
            h("td", { class: "right", title: provenanceText(prov.to[c.key]) || "no provenance on this side" },
              c.change === "removed" ? "—" : show(c.after))))))));
  render("diff",
    h("h1", {}, "Diff ", h("a", { href: `/ui/workloads/${seg(ns)}/${seg(name)}?kind=${seg(d.workload.split("/")[1])}` }, d.workload)),
    h("div", { class: "sides" },
      h("p", {}, "Left: ", h("strong", { id: "left-name" }, d.from ? d.from.label : "—"),
        d.from && d.from.why ? h("div", { class: "muted" }, d.from.why) : null),
      h("p", {}, "Right: ", h("strong", { id: "right-name" }, d.to ? d.to.label : "—"),
        d.to && d.to.why ? h("div", { class: "muted" }, d.to.why) : null)),
    d.changes.length ? null : h("p", { id: "diff-empty" }, "No difference."),
    sections,
    d.template_why ? h("p", { class: "muted" }, `Pod template: ${d.template_why}`) : null,
  );
}

// -- pod -------------------------------------------------------------------------------------

async function podPage(namespace, pod) {
  const [p, hist] = await Promise.all([
    api(`/api/v1/pods/${seg(namespace)}/${seg(pod)}`),
    api(`/api/v1/pods/${seg(namespace)}/${seg(pod)}/history?limit=50`),
  ]);
  const [wns, wkind, wname] = (p.workload || "").split("/");
  const factRows = Object.entries(p.facts).map(([k, v]) =>
    h("tr", { "data-key": k },
      h("th", { scope: "row", class: "key" }, k),
      h("td", { class: "value" }, show(v)),
      h("td", { class: "provenance" }, provenanceText(p.provenance[k]))));
  const sourceRows = Object.entries(p.sources).map(([n, s]) =>
    h("tr", { "data-source": n },
      h("th", { scope: "row" }, n),
      h("td", { class: "state" }, h("span", { class: `badge s-${s.status === "ok" ? "ok" : "unverifiable"}` }, s.status)),
      h("td", { class: "message" }, s.message || "")));
  const historyRows = hist.snapshots.map((s) =>
    h("tr", { "data-snapshot": s.id },
      h("td", {}, String(s.id)),
      h("td", {}, when(s.received_at)),
      h("td", { class: "changes" }, s.changes.map((c) => `${c.key} (${c.change})`).join(", ") || "—"),
      h("td", {}, s.previous_id !== null && p.workload
        ? h("a", { class: "diff-link", href: diffHref(p.workload, `revisions=${s.previous_id},${s.id}`) },
          `diff ${s.previous_id} → ${s.id}`)
        : "first")));
  render("pod",
    h("h1", {}, `${p.namespace}/${p.pod}`),
    h("p", { class: "muted" },
      p.workload ? ["workload ", h("a", { href: `/ui/workloads/${seg(wns)}/${seg(wname)}?kind=${seg(wkind)}` }, p.workload)] : "no workload",
      ` · node ${p.node || "—"} · last seen ${when(p.last_seen)}${p.stale ? " (stale)" : ""}`,
      p.engine ? ` · engine ${p.engine.state}` : ""),
    h("section", {},
      h("h2", {}, "Sources"),
      h("table", { id: "sources" },
        h("thead", {}, h("tr", {}, h("th", {}, "Source"), h("th", {}, "State"), h("th", {}, "Message"))),
        h("tbody", {}, sourceRows))),
    h("section", {},
      h("h2", {}, "Facts"),
      h("table", { id: "facts" },
        h("thead", {}, h("tr", {}, h("th", {}, "Fact"), h("th", {}, "Value"), h("th", {}, "Provenance"))),
        h("tbody", {}, factRows))),
    h("section", {},
      h("h2", {}, "History"),
      h("table", { id: "history" },
        h("thead", {}, h("tr", {}, h("th", {}, "Snapshot"), h("th", {}, "Received"), h("th", {}, "Changes"), h("th", {}, "Diff"))),
        h("tbody", {}, historyRows))),
  );
}

// -- routing ---------------------------------------------------------------------------------

function parse(location) {
  const parts = location.pathname.replace(/\/+$/, "").split("/").slice(2).map(decodeURIComponent);
  const params = new URLSearchParams(location.search);
  if (parts.length === 0) return ["fleet", () => fleetPage()];
  if (parts[0] === "workloads" && parts.length === 3) {
    return ["workload", () => workloadPage(parts[1], parts[2], params.get("kind"))];
  }
  if (parts[0] === "diff" && parts.length === 1) return ["diff", () => diffPage(params)];
  if (parts[0] === "pods" && parts.length === 3) return ["pod", () => podPage(parts[1], parts[2])];
  return ["fleet", () => { throw new ApiFailure(`no page at ${location.pathname}`); }];
}

async function route() {
  const [page, load] = parse(window.location);
  setPage(page, "loading");
  updateLogout();
  try {
    await load();
    document.title = `skewwatch · ${main.querySelector("h1")?.textContent || page}`;
  } catch (e) {
    if (e instanceof AuthNeeded) {
      const failed = Boolean(sessionStorage.getItem(TOKEN_KEY));
      if (failed) sessionStorage.removeItem(TOKEN_KEY);
      updateLogout();
      showLogin(page, failed);
    } else {
      showError(page, e instanceof ApiFailure ? e.message : `the page failed: ${e}`);
    }
  }
}

route();
