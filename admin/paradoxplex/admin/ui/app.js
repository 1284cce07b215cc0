// paradoxplex fleet dashboard. No dependencies, no build step.
//
// Rules:
// - The token is asked once and kept in sessionStorage (this tab only); it is sent as
//   "Authorization: Bearer" and never put in a URL or a cookie.
// - Every POLL_MS the page reads the admin API (nodes, upstreams, one page of sockets, readyz);
//   a poll starts only when the previous one has ended.
// - Every action is one of the API's own routes; nothing here changes state another way.
// - Every action sends a fresh Idempotency-Key and is tried again with the same key while it
//   is answered 503, 504 or 409 in_progress (RETRY: the admin CLI's numbers,
//   paradoxplex.shared.retry.ADMIN_ACTION), so the fleet acts once however often it is sent.
//   A last failure says its outcome (not applied, or unknown).
// - Everything is written with textContent: no HTML is ever built from data.

const POLL_MS = 1000;
const HISTORY_S = 300;
const STALE_MS = 3000;
const TOKEN_KEY = "paradoxplex.admin.token";
const PALETTE = ["#1d2430", "#2257c5", "#d9480f", "#2f9e44", "#9c36b5", "#0c8599", "#e67700", "#c2255c"];
const API = new URL("../", document.baseURI); // the admin API's root, beside /ui/
// 0.25 s doubling up to 2 s, each plus up to 0.1 s, 6 attempts in all
const RETRY = { first: 250, cap: 2000, jitter: 100, attempts: 6 };

const $ = (id) => document.getElementById(id);

class HttpError extends Error {
  constructor(status, code, message, outcome) {
    const said = { not_applied: " (not applied)", unknown: " (outcome unknown: it may have happened)" };
    super(message + (said[outcome] || ""));
    this.status = status;
    this.code = code;
    this.outcome = outcome;
  }

  get retryable() {
    return this.status === 503 || this.status === 504 || this.code === "in_progress";
  }
}

// -- the API ---------------------------------------------------------------------------

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function call(method, path, body, key) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (key) headers["Idempotency-Key"] = key;
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(new URL(path, API), init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  return { response, data };
}

async function api(method, path, body, key) {
  const { response, data } = await call(method, path, body, key);
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new HttpError(response.status, error.code || "http", error.message || response.statusText, error.outcome);
  }
  return { data, date: response.headers.get("Date") };
}

function freshKey() {
  // crypto.randomUUID needs a secure context; getRandomValues does not (plain http:// too)
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function perform(method, path, body) {
  // an action: one key, tried again with it while the answer says so (see the rules)
  const key = freshKey();
  for (let failures = 1; ; failures++) {
    try {
      return await api(method, path, body, key);
    } catch (failure) {
      if (!(failure instanceof HttpError) || !failure.retryable || failures >= RETRY.attempts) throw failure;
    }
    const wait = Math.min(RETRY.cap, RETRY.first * 2 ** (failures - 1)) + Math.random() * RETRY.jitter;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function readyz() {
  // 503 is an answer here (not ready, or Redis lost): its body says why
  const { data } = await call("GET", "readyz");
  return data || {};
}

const socketPath = (uuid, tail = "") => `v1/sockets/${encodeURIComponent(uuid)}${tail}`;

// -- numbers ---------------------------------------------------------------------------

class Rate {
  // a counter's rate over the last `windowS` seconds of samples; null until two samples
  constructor(windowS = 6) {
    this.windowS = windowS;
    this.samples = [];
  }

  add(t, value) {
    if (typeof value !== "number" || !Number.isFinite(t)) return;
    const last = this.samples.at(-1);
    if (last && t <= last[0]) return;
    if (last && value < last[1]) this.samples = []; // the counter restarted
    this.samples.push([t, value]);
    while (this.samples.length > 2 && t - this.samples[0][0] > this.windowS) this.samples.shift();
  }

  get value() {
    if (this.samples.length < 2) return null;
    const [t0, v0] = this.samples[0];
    const [t1, v1] = this.samples.at(-1);
    return (v1 - v0) / (t1 - t0);
  }
}

const DASH = "—";

function fmtCount(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : DASH;
}

function fmtRate(r) {
  if (typeof r !== "number" || !Number.isFinite(r)) return DASH;
  return r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString("en-US");
}

function fmtBytes(n) {
  if (typeof n !== "number") return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function fmtAge(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return DASH;
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

const slug = (text) => String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-");

// -- state -----------------------------------------------------------------------------

const state = {
  running: false,
  timer: 0,
  inFlight: null,
  again: false,
  skewMs: 0,
  lastOk: 0,
  served: null,
  nodes: [],
  upstreams: [],
  sockets: [],
  cursors: [null],
  page: 0,
  nextCursor: null,
  rates: new Map(),
  history: [],
  colors: new Map(),
};

function rate(key, t, value) {
  let r = state.rates.get(key);
  if (!r) {
    r = new Rate();
    state.rates.set(key, r);
  }
  r.seen = true;
  r.add(t, value);
  return r.value;
}

function pruneRates() {
  for (const [key, r] of state.rates) {
    if (!r.seen) state.rates.delete(key);
    r.seen = false;
  }
}

const serverNow = () => (Date.now() + state.skewMs) / 1000;

function learnSkew(date) {
  // the Date header has whole seconds: a smaller gap is no evidence of a skew
  const at = Date.parse(date || "");
  if (Number.isNaN(at)) return;
  const raw = at - Date.now();
  state.skewMs = Math.abs(raw) <= 1500 ? 0 : raw + 500;
}

function colorOf(nodeId) {
  if (!state.colors.has(nodeId)) state.colors.set(nodeId, 1 + (state.colors.size % (PALETTE.length - 1)));
  return state.colors.get(nodeId);
}

// -- tables ----------------------------------------------------------------------------

function fmtProcess(n, now) {
  // how this node's process came to be: its incarnation (when the node reports one), and
  // the hot handoff that made it the node, or its start
  const parts = n.incarnation ? [`incarnation ${String(n.incarnation).slice(0, 8)}`] : [];
  const h = n.last_handoff;
  if (h) {
    const kept = h.kept ? `, ${fmtCount(h.kept)} kept` : "";
    parts.push(`took over ${fmtAge(now - h.at)} ago: ${fmtCount(h.moved)} moved${kept}, ` +
      `pause ${fmtCount(Math.round(h.pause_ms))} ms`);
  } else if (typeof n.started_at === "number") {
    parts.push(`started ${fmtAge(now - n.started_at)} ago`);
  }
  return parts.length ? parts.join(" · ") : DASH;
}

function setText(cell, text) {
  const value = String(text);
  if (cell.textContent !== value) cell.textContent = value;
}

function setPill(cell, text) {
  let pill = cell.firstElementChild;
  if (!pill) {
    pill = document.createElement("span");
    cell.replaceChildren(pill);
  }
  const cls = `state ${slug(text)}`;
  if (pill.className !== cls) pill.className = cls;
  setText(pill, text);
}

function setLabels(cell, labels) {
  const pairs = Object.entries(labels || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const key = JSON.stringify(pairs);
  if (cell.dataset.v === key) return;
  cell.dataset.v = key;
  const chips = pairs.map(([k, v]) => {
    const chip = document.createElement("span");
    chip.className = "label";
    chip.textContent = `${k}=${v}`;
    return chip;
  });
  cell.replaceChildren(...chips);
}

function columnsOf(table) {
  return [...table.tHead.rows[0].cells].map((th) => [th.textContent, th.classList.contains("num")]);
}

function syncRows(table, items, keyOf, update, build = () => {}) {
  // keyed rows: a row (and its buttons) stays the same element while its item is listed
  const body = table.tBodies[0];
  const columns = columnsOf(table);
  const existing = new Map([...body.rows].map((row) => [row.dataset.key, row]));
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let row = existing.get(key);
    if (row) {
      existing.delete(key);
    } else {
      row = document.createElement("tr");
      row.dataset.key = key;
      for (const [label, num] of columns) {
        const cell = row.insertCell();
        cell.dataset.label = label;
        if (num) cell.className = "num";
      }
      build(row, item);
    }
    update(row.cells, item);
    const wanted = previous ? previous.nextSibling : body.firstChild;
    if (row !== wanted) body.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

function renderNodes() {
  const now = serverNow();
  syncRows($("nodes"), state.nodes, (n) => n.id, (c, n) => {
    setText(c[0], n.id === state.served ? `${n.id} (this page)` : n.id);
    setText(c[1], n.listen || DASH);
    setPill(c[2], n.state || "up");
    // a restart under the same id is a new incarnation: it shows as a young age here
    setText(c[3], n.started_at ? fmtAge(now - n.started_at) : DASH);
    const started = n.incarnation ? `incarnation ${n.incarnation}` : "";
    if (c[3].title !== started) c[3].title = started;
    setText(c[4], fmtCount(n.sockets));
    setText(c[5], fmtRate(n.rateIn));
    setText(c[6], fmtRate(n.rateOut));
    setText(c[7], fmtCount(n.drops));
    setText(c[8], n.heartbeat_at ? fmtAge(now - n.heartbeat_at) : DASH);
    setText(c[9], fmtProcess(n, now));
    c[9].title = n.last_handoff ? `took over from pid ${n.last_handoff.from_pid}` : "";
  });
  const select = $("f-node");
  const wanted = ["", ...state.nodes.map((n) => n.id)];
  const have = [...select.options].map((o) => o.value);
  if (wanted.join("\n") !== have.join("\n")) {
    const chosen = select.value;
    select.replaceChildren(...wanted.map((id) => new Option(id || "all", id)));
    if (!wanted.includes(chosen)) select.append(new Option(chosen, chosen));
    select.value = chosen;
  }
}

function upstreamState(view) {
  if (view.state === "ready") return view.ready ? "in rotation" : "ready";
  if (view.state === "backoff") return "down";
  return view.state || DASH;
}

function upstreamRows() {
  const t = Date.now() / 1000;
  const rows = [];
  for (const upstream of state.upstreams) {
    const views = Object.entries(upstream.nodes || {}).sort(([a], [b]) => a.localeCompare(b));
    const name = upstream.mode === "draining" ? `${upstream.id} (draining)` : upstream.id;
    if (views.length === 0) rows.push({ key: upstream.id, name, node: DASH, view: {} });
    for (const [node, view] of views) {
      const key = `${upstream.id} ${node}`;
      const per = (field) => (typeof view[field] === "number" ? rate(`u ${key} ${field}`, t, view[field]) : null);
      rows.push({ key, name, node, view, sent: per("sent"), received: per("received"), errors: per("errors") });
    }
  }
  return rows;
}

function renderUpstreams() {
  syncRows($("upstreams"), upstreamRows(), (r) => r.key, (c, r) => {
    setText(c[0], r.name);
    setText(c[1], r.node);
    setPill(c[2], upstreamState(r.view));
    setText(c[3], r.view.reason || r.view.error || DASH);
    setText(c[4], fmtRate(r.sent));
    setText(c[5], fmtRate(r.received));
    setText(c[6], fmtRate(r.errors));
    const rtt = r.view.rtt_ms;
    setText(c[7], typeof rtt === "number" ? `${rtt.toFixed(1)} ms` : DASH);
  });
}

function buildSocketActions(row) {
  const cell = row.cells[8];
  const box = document.createElement("div");
  box.className = "actions";
  for (const [act, label] of [["send", "Send"], ["toggle", "Pause"], ["labels", "Labels"], ["close", "Close"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = act === "close" ? "small danger" : "small quiet";
    button.dataset.act = act;
    button.textContent = label;
    box.append(button);
  }
  cell.replaceChildren(box);
}

function matches(socket, needle) {
  if (!needle) return true;
  const labels = Object.entries(socket.labels || {}).map(([k, v]) => `${k}=${v}`);
  return [socket.uuid, socket.node, socket.remote, socket.state, ...labels].some((text) =>
    String(text).toLowerCase().includes(needle),
  );
}

function renderSockets() {
  const now = serverNow();
  const needle = $("f-search").value.trim().toLowerCase();
  const shown = state.sockets.filter((s) => matches(s, needle));
  syncRows($("sockets"), shown, (s) => s.uuid, (c, s) => {
    setText(c[0], s.uuid);
    setText(c[1], s.node || DASH);
    setText(c[2], s.remote || DASH);
    setPill(c[3], s.state || DASH);
    setLabels(c[4], s.labels);
    setText(c[5], fmtBytes(s.bytes_in));
    setText(c[6], fmtBytes(s.bytes_out));
    setText(c[7], s.connected_at ? fmtAge(now - s.connected_at) : DASH);
    const toggle = c[8].querySelector("[data-act=toggle]");
    setText(toggle, s.state === "paused" ? "Resume" : "Pause");
  }, buildSocketActions);
  const empty = $("no-sockets");
  if (!empty.classList.contains("error")) empty.hidden = shown.length > 0;
  $("prev").disabled = state.page === 0;
  $("next").disabled = !state.nextCursor;
  setText($("page"), `page ${state.page + 1}`);
}

function renderTotals() {
  const sum = (pick) => state.nodes.reduce((acc, n) => acc + (pick(n) || 0), 0);
  const known = (pick) => state.nodes.some((n) => typeof pick(n) === "number");
  setText($("t-nodes"), fmtCount(state.nodes.length));
  setText($("t-sockets"), fmtCount(sum((n) => n.sockets)));
  setText($("t-in"), known((n) => n.rateIn) ? fmtRate(sum((n) => n.rateIn)) : DASH);
  setText($("t-out"), known((n) => n.rateOut) ? fmtRate(sum((n) => n.rateOut)) : DASH);
  setText($("t-drops"), known((n) => n.rateDrops) ? fmtRate(sum((n) => n.rateDrops)) : DASH);
}

// -- charts ----------------------------------------------------------------------------

const CHARTS = [
  ["c-sockets", (n) => n.sockets],
  ["c-messages", (n) => (n.rateIn == null || n.rateOut == null ? null : n.rateIn + n.rateOut)],
  ["c-drops", (n) => n.rateDrops],
];

function remember() {
  const t = serverNow();
  const nodes = {};
  for (const n of state.nodes) nodes[n.id] = CHARTS.map(([, pick]) => pick(n));
  state.history.push({ t, nodes });
  while (state.history.length && state.history[0].t < t - HISTORY_S) state.history.shift();
}

function series(index) {
  // [label, colour index, points] for the fleet and for each node
  const ids = [...new Set(state.history.flatMap((h) => Object.keys(h.nodes)))].sort();
  const fleet = state.history.map((h) => {
    const values = Object.values(h.nodes).map((v) => v[index]);
    return [h.t, values.some((v) => v != null) ? values.reduce((a, v) => a + (v || 0), 0) : null];
  });
  const lines = [["fleet", 0, fleet]];
  for (const id of ids) {
    const points = state.history.map((h) => [h.t, h.nodes[id] ? h.nodes[id][index] : null]);
    lines.push([id, colorOf(id), points]);
  }
  return lines;
}

function drawChart(canvas, lines) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  const now = serverNow();
  // the last 5 minutes, or less while the page has not been open that long
  const first = state.history.length ? state.history[0].t : now;
  const span = Math.min(HISTORY_S, Math.max(30, now - first));
  let top = 1;
  for (const [, , points] of lines) for (const [, v] of points) if (v != null && v > top) top = v;
  top *= 1.15;
  const pad = 4 * ratio;
  const x = (t) => pad + ((t - (now - span)) / span) * (width - 2 * pad);
  const y = (v) => height - pad - (v / top) * (height - 2 * pad - 12 * ratio);
  g.font = `${10 * ratio}px system-ui, sans-serif`;
  g.fillStyle = "#687385";
  g.fillText(fmtRate(top / 1.15), pad, 11 * ratio);
  g.textAlign = "right";
  g.fillText("now", width - pad, height - pad);
  g.textAlign = "left";
  g.fillText(`−${fmtAge(span)}`, pad, height - pad);
  for (const [label, color, points] of [...lines].reverse()) {
    g.strokeStyle = PALETTE[color];
    g.lineWidth = (label === "fleet" ? 2 : 1.25) * ratio;
    g.beginPath();
    let open = false;
    for (const [t, v] of points) {
      if (v == null) {
        open = false;
        continue;
      }
      if (open) g.lineTo(x(t), y(v));
      else g.moveTo(x(t), y(v));
      open = true;
    }
    g.stroke();
  }
}

function renderCharts() {
  CHARTS.forEach(([id], index) => drawChart($(id), series(index)));
  const legend = $("legend");
  const entries = [["fleet", 0], ...state.nodes.map((n) => [n.id, colorOf(n.id)])];
  const text = entries.map(([label]) => label).join("\n");
  if (legend.dataset.v === text) return;
  legend.dataset.v = text;
  legend.replaceChildren(
    ...entries.map(([label, color]) => {
      const item = document.createElement("li");
      item.className = `c${color}`;
      item.textContent = label;
      return item;
    }),
  );
}

// -- status ----------------------------------------------------------------------------

function showBanner(messages) {
  const banner = $("banner");
  banner.hidden = messages.length === 0;
  setText(banner, messages.join(" "));
}

function showLive() {
  const pill = $("live");
  const age = Date.now() - state.lastOk;
  const ok = state.lastOk && age < STALE_MS;
  pill.className = ok ? "pill ok" : "pill stale";
  const at = state.lastOk ? new Date(state.lastOk).toLocaleTimeString() : "never";
  setText(pill, ok ? `live · ${at}` : `not updating · last ${at}`);
}

let toastTimer = 0;
function toast(message, bad = false) {
  const box = $("toast");
  box.className = bad ? "toast bad" : "toast";
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.hidden = true;
  }, 4000);
}

function servedBy() {
  const here = new URL(location.href);
  const local = ["0.0.0.0", "[::]", "::"];
  const node = state.nodes.find((n) => {
    try {
      const url = new URL(n.admin_url);
      return url.port === here.port && (url.hostname === here.hostname || local.includes(url.hostname));
    } catch {
      return false;
    }
  });
  state.served = node ? node.id : null;
  setText($("served"), node ? `served by node ${node.id}` : `served by ${here.host}`);
}

// -- polling ---------------------------------------------------------------------------

function socketsQuery() {
  const params = new URLSearchParams({ limit: $("f-limit").value });
  const node = $("f-node").value;
  const wantedState = $("f-state").value;
  const label = $("f-label").value.trim();
  if (node) params.set("node", node);
  if (wantedState) params.set("state", wantedState);
  if (label) params.set("label", label);
  const cursor = state.cursors[state.page];
  if (cursor) params.set("cursor", cursor);
  return `v1/sockets?${params}`;
}

function takeNodes(data) {
  state.nodes = (data.items || []).slice().sort((a, b) => a.id.localeCompare(b.id));
  for (const n of state.nodes) {
    const t = n.heartbeat_at;
    // counters start again with each incarnation: one rate per incarnation
    const key = `n ${n.id} ${n.incarnation || ""}`;
    n.rateIn = rate(`${key} in`, t, n.messages_in);
    n.rateOut = rate(`${key} out`, t, n.messages_out);
    n.rateDrops = rate(`${key} drops`, t, n.drops);
  }
}

function takeSockets(result) {
  const empty = $("no-sockets");
  if (result.status === "rejected") {
    if (result.reason instanceof HttpError && result.reason.status === 400) {
      empty.className = "error";
      empty.hidden = false;
      setText(empty, `Filter not accepted: ${result.reason.message}`);
      state.sockets = [];
      state.nextCursor = null;
    }
    return;
  }
  empty.className = "dim";
  setText(empty, "No sockets.");
  const page = result.value.data;
  state.sockets = page.items || [];
  state.nextCursor = page.cursor || null;
}

function fleetWarnings(results, ready) {
  const served = state.served ? `Node ${state.served}` : "The node serving this page";
  const lost =
    ready.fleet === "degraded" ||
    results.some((r) => r.status === "rejected" && r.reason instanceof HttpError && r.reason.status === 503);
  const partial = results.some((r) => r.status === "fulfilled" && r.value.data && r.value.data.partial);
  const messages = [];
  if (lost) messages.push(`${served} has lost Redis: it serves its own sockets, and what it shows of the rest of the fleet may be missing or stale.`);
  if (partial && !lost) messages.push("The socket listing is partial: only this node's sockets.");
  return messages;
}

async function poll() {
  const results = await Promise.allSettled([api("GET", "v1/nodes"), api("GET", "v1/upstreams"), api("GET", socketsQuery())]);
  const ready = await readyz().catch(() => ({}));
  const refused = results.find((r) => r.status === "rejected" && r.reason instanceof HttpError && r.reason.status === 401);
  if (refused) {
    signOut("The node refused the token (401 unauthorized): enter the node's --admin-token.");
    return;
  }
  const [nodes, upstreams, sockets] = results;
  if (nodes.status === "fulfilled") {
    learnSkew(nodes.value.date);
    takeNodes(nodes.value.data);
    servedBy();
  }
  if (upstreams.status === "fulfilled") state.upstreams = upstreams.value.data.items || [];
  takeSockets(sockets);
  pruneRates();
  const unreachable = results.every((r) => r.status === "rejected" && !(r.reason instanceof HttpError));
  const messages = unreachable ? ["The node serving this page does not answer."] : fleetWarnings(results, ready);
  showBanner(messages);
  if (results.some((r) => r.status === "fulfilled")) state.lastOk = Date.now();
  if (nodes.status === "fulfilled") remember();
  renderNodes();
  renderUpstreams();
  renderSockets();
  renderTotals();
  renderCharts();
  showLive();
}

async function loop() {
  clearTimeout(state.timer);
  do {
    state.again = false;
    state.inFlight = poll().catch((error) => toast(`Update failed: ${error.message}`, true));
    await state.inFlight;
  } while (state.again && state.running);
  state.inFlight = null;
  if (state.running) state.timer = setTimeout(loop, POLL_MS);
}

function refreshNow() {
  // poll at once (after the poll in flight, if any) rather than at the next tick
  if (!state.running) return;
  if (state.inFlight) state.again = true;
  else loop();
}

function start() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("signout").hidden = false;
  if (state.running) return;
  state.running = true;
  loop();
}

function signOut(message) {
  state.running = false;
  clearTimeout(state.timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("dash").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  setText(error, message || "");
  setText($("live"), "signed out");
  $("live").className = "pill";
  $("token").value = "";
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  const error = $("login-error");
  if (/[^\x21-\x7e]/.test(token)) {
    error.hidden = false;
    setText(error, "A token is printable ASCII without spaces.");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await api("GET", "v1/nodes");
  } catch (failure) {
    sessionStorage.removeItem(TOKEN_KEY);
    error.hidden = false;
    if (failure instanceof HttpError && failure.status === 401) {
      setText(error, token ? "The node refused this token (401 unauthorized). Check the node's --admin-token." : "This node needs a token (401 unauthorized).");
    } else {
      setText(error, `The node did not answer as expected: ${failure.message}`);
    }
    return;
  }
  error.hidden = true;
  start();
}

// -- actions ---------------------------------------------------------------------------

const ACTIONS = {
  send: {
    title: "Send text to the socket",
    label: "text (written as UTF-8, unchanged)",
    ok: "Send",
    initial: () => "",
    run: (uuid, text) => perform("POST", socketPath(uuid, "/send"), { text }),
    done: "sent",
  },
  labels: {
    title: "Edit the socket's labels",
    label: "key=value pairs, comma separated (empty: no labels)",
    ok: "Save",
    initial: (socket) => Object.entries(socket.labels || {}).map(([k, v]) => `${k}=${v}`).join(", "),
    run: (uuid, text) => perform("PUT", socketPath(uuid, "/labels"), parseLabels(text)),
    done: "labels saved",
  },
  close: {
    title: "Close the socket?",
    label: "",
    ok: "Close socket",
    initial: () => "",
    run: (uuid) => perform("DELETE", socketPath(uuid)),
    done: "closed",
  },
};

function parseLabels(text) {
  const labels = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at <= 0) throw new Error(`"${part}" is not key=value`);
    labels[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return labels;
}

let pending = null;

function openAction(kind, socket) {
  const action = ACTIONS[kind];
  pending = { action, uuid: socket.uuid };
  setText($("act-title"), action.title);
  setText($("act-uuid"), `${socket.uuid} · ${socket.remote || ""} on ${socket.node || "?"}`);
  setText($("act-label"), action.label);
  $("act-label").hidden = !action.label;
  const input = $("act-input");
  input.hidden = !action.label;
  input.value = action.initial(socket);
  $("act-error").hidden = true;
  setText($("act-ok"), action.ok);
  $("act-ok").className = kind === "close" ? "danger" : "";
  $("act").showModal();
  if (action.label) input.focus();
  else $("act-ok").focus();
}

async function confirmAction(event) {
  event.preventDefault();
  if (!pending) return;
  const { action, uuid } = pending;
  const error = $("act-error");
  $("act-ok").disabled = true;
  try {
    await action.run(uuid, $("act-input").value);
    $("act").close();
    pending = null;
    toast(`${uuid.slice(0, 8)}…: ${action.done}`);
    refreshNow();
  } catch (failure) {
    error.hidden = false;
    setText(error, failure.message);
  } finally {
    $("act-ok").disabled = false;
  }
}

async function onSocketClick(event) {
  const button = event.target.closest("button[data-act]");
  if (!button) return;
  const uuid = button.closest("tr").dataset.key;
  const socket = state.sockets.find((s) => s.uuid === uuid) || { uuid };
  const act = button.dataset.act;
  if (act !== "toggle") {
    openAction(act, socket);
    return;
  }
  const verb = socket.state === "paused" ? "resume" : "pause";
  button.disabled = true;
  try {
    await perform("POST", socketPath(uuid, `/${verb}`));
    toast(`${uuid.slice(0, 8)}…: ${verb === "pause" ? "paused" : "resumed"}`);
    refreshNow();
  } catch (failure) {
    toast(`${verb} failed: ${failure.message}`, true);
  } finally {
    button.disabled = false;
  }
}

async function onBroadcast(event) {
  event.preventDefault();
  const body = { target: $("b-target").value, text: $("b-text").value };
  const label = $("b-label").value.trim();
  if (label) body.label = label;
  try {
    const { data } = await perform("POST", "v1/broadcast", body);
    toast(`broadcast sent: ${data.delivered_local} socket(s) of this node; the other nodes write theirs`);
    $("b-text").value = "";
  } catch (failure) {
    toast(`broadcast failed: ${failure.message}`, true);
  }
}

function onFilter() {
  state.cursors = [null];
  state.page = 0;
  refreshNow();
}

// -- wiring ----------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut(""));
  $("sockets").tBodies[0].addEventListener("click", onSocketClick);
  $("act-form").addEventListener("submit", confirmAction);
  $("act-cancel").addEventListener("click", () => $("act").close());
  $("broadcast").addEventListener("submit", onBroadcast);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("f-search").addEventListener("input", renderSockets);
  for (const id of ["f-node", "f-state", "f-limit"]) $(id).addEventListener("change", onFilter);
  $("f-label").addEventListener("change", onFilter);
  $("next").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors[state.page + 1] = state.nextCursor;
    state.page += 1;
    refreshNow();
  });
  $("prev").addEventListener("click", () => {
    if (state.page === 0) return;
    state.page -= 1;
    refreshNow();
  });
  window.addEventListener("resize", renderCharts);
  setInterval(() => state.running && showLive(), 1000);
  if (sessionStorage.getItem(TOKEN_KEY) === null) signOut("");
  else start();
}

wire();
