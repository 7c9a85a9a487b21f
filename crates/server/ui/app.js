// logpipe's web UI: one module, no build step, no dependencies. It speaks only the documented
// HTTP API (/api/v1/logs, /api/v1/query, /api/v1/tail, /api/v1/explain) with the same token and
// limits as any client. The view lives in the URL: q, range (or from/to), order, utc.

const $ = (id) => document.getElementById(id);
const PAGE = 200;
const RANGES = { "5m": 300n, "1h": 3600n, "24h": 86400n, "7d": 604800n };
const NS = 1_000_000_000n;
const LEVEL_COLORS = {
  error: "var(--err)", fatal: "var(--err)", critical: "var(--err)", crit: "var(--err)",
  warn: "var(--warn)", warning: "var(--warn)", info: "var(--info)", notice: "var(--info)",
  debug: "var(--debug)", trace: "var(--debug)",
};
const PALETTE = ["#7a5af8", "#12b76a", "#ee46bc", "#0ba5ec", "#f97066", "#84cc16", "#a3a3a3"];

let token = sessionStorage.getItem("logpipe-token") || "";
let view = fromUrl();
let run = 0; // the current run; answers of older runs are dropped
let cursor = null;
let loading = false;
let bounds = null; // [from, to) of the histogram, BigInt ns
let step = 0n;
let tail = null;

// ---- time ----

/** RFC 3339 with up to nine fractional digits, or integer ns, as BigInt ns. */
function parseNs(s) {
  s = String(s).trim();
  if (/^-?\d+$/.test(s)) return BigInt(s);
  const m = s.match(/^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/i);
  if (!m) throw new Error(`not a time: ${s}`);
  const ms = Date.parse(m[1] + m[3]);
  if (Number.isNaN(ms)) throw new Error(`not a time: ${s}`);
  return BigInt(ms) * 1_000_000n + BigInt((m[2] || "").padEnd(9, "0"));
}

function formatNs(ns, utc, withNanos) {
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const [Y, M, D, h, m, s] = utc
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  const frac = withNanos ? "." + pad(Number(((ns % NS) + NS) % NS), 9) : "." + pad(d.getUTCMilliseconds(), 3);
  return `${Y}-${pad(M)}-${pad(D)} ${pad(h)}:${pad(m)}:${pad(s)}${frac}${utc ? "Z" : ""}`;
}

const nowNs = () => BigInt(Date.now()) * 1_000_000n;

/** A bucket width giving about 100 buckets over `span` ns, rounded to a readable unit. */
function niceStep(span) {
  const steps = ["1s", "2s", "5s", "10s", "30s", "1m", "2m", "5m", "10m", "30m", "1h", "3h", "6h", "12h", "1d", "7d"];
  const ns = (u) => BigInt(parseInt(u)) * { s: 1n, m: 60n, h: 3600n, d: 86400n }[u.slice(-1)] * NS;
  for (const u of steps) if (span / ns(u) <= 120n) return [u, ns(u)];
  return ["30d", 30n * 86400n * NS];
}

// ---- the view and the URL ----

function fromUrl() {
  const p = new URLSearchParams(location.search);
  return {
    q: p.get("q") || "",
    range: p.get("range") || (p.get("from") || p.get("to") ? "custom" : ""),
    from: p.get("from") || "",
    to: p.get("to") || "",
    asc: p.get("order") === "asc",
    utc: p.get("utc") === "1",
    by: p.get("by") || "level",
  };
}

function toUrl() {
  const p = new URLSearchParams();
  if (view.q) p.set("q", view.q);
  if (view.range === "custom") {
    if (view.from) p.set("from", view.from);
    if (view.to) p.set("to", view.to);
  } else if (view.range) p.set("range", view.range);
  if (view.asc) p.set("order", "asc");
  if (view.utc) p.set("utc", "1");
  if (view.by !== "level") p.set("by", view.by);
  const s = p.toString();
  history.replaceState(null, "", s ? `?${s}` : location.pathname);
}

/** The filter parameters of the view: q and the time range. */
function filterParams() {
  const p = new URLSearchParams();
  if (view.q.trim()) p.set("q", view.q.trim());
  if (view.range in RANGES) p.set("from", String(nowNs() - RANGES[view.range] * NS));
  if (view.range === "custom") {
    if (view.from) p.set("from", String(parseNs(view.from)));
    if (view.to) p.set("to", String(parseNs(view.to)));
  }
  return p;
}

function showView() {
  $("q").value = view.q;
  $("range").value = view.range;
  $("from").value = view.from;
  $("to").value = view.to;
  $("custom").hidden = view.range !== "custom";
  $("asc").checked = view.asc;
  $("utc").checked = view.utc;
  const by = $("by");
  if (![...by.options].some((o) => o.value === view.by)) by.append(new Option(view.by, view.by));
  by.value = view.by;
}

// ---- HTTP ----

async function askToken() {
  const dlg = $("token-dialog");
  $("token").value = "";
  if (!dlg.open) dlg.showModal();
  await new Promise((resolve) => dlg.addEventListener("close", resolve, { once: true }));
  token = $("token").value.trim();
  sessionStorage.setItem("logpipe-token", token);
}

/** GET path?params with the token; asks for a token on 401 and tries again. */
async function api(path, params, opts = {}) {
  for (;;) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const r = await fetch(`${path}?${params}`, { headers, signal: opts.signal });
    if (r.status !== 401) return r;
    await askToken();
  }
}

async function failure(r) {
  let body;
  try {
    body = await r.json();
  } catch {
    body = { error: { message: `${r.status} ${r.statusText}` } };
  }
  return body.error || { message: JSON.stringify(body) };
}

function showError(err) {
  const box = $("error");
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  let text = err.message || String(err);
  if (err.column && err.code === "bad_query") {
    // the query with a caret under the column the parser stopped at (1-based)
    text = `${view.q.trim()}\n${" ".repeat(Math.max(0, err.column - 1))}^\n${text}`;
    box.dataset.column = err.column;
  } else delete box.dataset.column;
  box.textContent = text;
  box.hidden = false;
}

// ---- records ----

/** Words and phrases of the query to highlight in messages (not tags, apps or keywords). */
function highlights() {
  const out = [];
  const re = /(i?~?)"((?:[^"\\]|\\.)*)"|([^\s()|"]+)/g;
  for (const m of view.q.split("|")[0].matchAll(re)) {
    if (m[2] !== undefined) out.push(m[2]);
    else if (m[3] && !/[=:~!]/.test(m[3]) && !/^(and|or|not|\*)$/i.test(m[3]) && !m[3].startsWith("-") && !m[3].startsWith("/"))
      out.push(m[3]);
  }
  return out.filter((w) => w.length > 0);
}

function messageNode(msg, words) {
  const span = document.createElement("span");
  span.className = "msg";
  if (!words.length) {
    span.textContent = msg;
    return span;
  }
  const esc = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const re = new RegExp(esc.join("|"), "gi");
  let last = 0;
  for (const m of msg.matchAll(re)) {
    if (m[0] === "") break;
    span.append(msg.slice(last, m.index));
    const mark = document.createElement("mark");
    mark.textContent = m[0];
    span.append(mark);
    last = m.index + m[0].length;
  }
  span.append(msg.slice(last));
  return span;
}

/** The query term for a tag: `key=value` (quoted when needed) or `tag:"bare"`. */
function tagTerm(tag) {
  const quote = (s) => (/^[\w.:@/-]+$/.test(s) && !/^[-~/*]/.test(s) ? s : `"${s.replace(/["\\]/g, "\\$&")}"`);
  const i = tag.indexOf("=");
  if (i <= 0) return `tag:${quote(tag)}`;
  return `${tag.slice(0, i)}=${quote(tag.slice(i + 1))}`;
}

function addTerm(term) {
  view.q = view.q.trim() ? `${view.q.trim()} ${term}` : term;
  showView();
  start();
}

function recordNode(rec, words) {
  const li = document.createElement("li");
  const ns = parseNs(rec.timestamp);
  li.dataset.ts = rec.timestamp;
  const ts = document.createElement("span");
  ts.className = "ts";
  ts.textContent = formatNs(ns, view.utc, false);
  ts.title = rec.timestamp;
  const app = document.createElement("span");
  app.className = "app";
  app.textContent = rec.app;
  li.append(ts, app, messageNode(rec.message, words));
  const tags = document.createElement("span");
  tags.className = "tags";
  for (const t of rec.tags || []) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    const [k, v] = t.split("=");
    if (k === "level" && v) chip.classList.add(`l-${v.toLowerCase()}`);
    chip.textContent = t;
    chip.title = "add to the query (Alt+click: exclude)";
    chip.addEventListener("click", (e) => addTerm(e.altKey ? `-${tagTerm(t)}` : tagTerm(t)));
    tags.append(chip);
  }
  const details = document.createElement("details");
  details.className = "rec";
  const summary = document.createElement("summary");
  summary.textContent = "fields";
  details.append(summary);
  details.addEventListener("toggle", () => {
    if (!details.open || details.querySelector("pre")) return;
    const pre = document.createElement("pre");
    const json = JSON.stringify(rec, null, 2);
    pre.textContent = json;
    const copy = document.createElement("button");
    copy.type = "button";
    copy.textContent = "copy as JSON";
    copy.addEventListener("click", () => navigator.clipboard?.writeText(JSON.stringify(rec)));
    details.append(pre, copy);
  });
  tags.append(details);
  li.append(tags);
  return li;
}

function parseNdjson(text) {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

/** The `Logpipe-Cost` header (`key=value` pairs) in a few words. */
function costText(r) {
  const c = r.headers.get("Logpipe-Cost");
  if (!c) return "";
  const v = Object.fromEntries(c.split(/\s+/).map((kv) => kv.split("=")));
  if (v.blocks === undefined) return c;
  const skipped = Number(v.blocks_pruned_time || 0) + Number(v.blocks_pruned_bloom || 0);
  return `${v.blocks_read} of ${v.blocks} blocks read, ${skipped} skipped, ${Number(v.bytes_read || 0).toLocaleString()} bytes, ${v.ms} ms`;
}

async function loadPage(id) {
  if (loading || (cursor === null && $("records").childElementCount > 0)) return;
  loading = true;
  const p = filterParams();
  p.set("limit", String(PAGE));
  if (view.asc) p.set("order", "asc");
  if (cursor) p.set("cursor", cursor);
  try {
    const r = await api("/api/v1/logs", p);
    if (id !== run) return;
    if (!r.ok) {
      showError(await failure(r));
      cursor = null;
      $("more").textContent = "";
      return;
    }
    const recs = parseNdjson(await r.text());
    if (id !== run) return;
    const words = highlights();
    const frag = document.createDocumentFragment();
    for (const rec of recs) frag.append(recordNode(rec, words));
    $("records").append(frag);
    if (!p.has("cursor")) {
      const keys = new Set(recs.flatMap((rec) => (rec.tags || []).filter((t) => t.includes("=")).map((t) => t.split("=")[0])));
      facets(id, keys);
      // the keys the chart can stack by
      const by = $("by");
      for (const k of [...keys].sort()) if (![...by.options].some((o) => o.value === k)) by.append(new Option(k, k));
    }
    cursor = r.headers.get("Logpipe-Next-Cursor");
    const shown = $("records").childElementCount;
    $("more").textContent = cursor ? "loading more as you scroll…" : shown ? `${shown} records, the end` : "no records match";
    const cost = costText(r);
    $("cost").textContent = cost ? ` · first page: ${cost}` : "";
    if (document.body.dataset.ready !== "1") document.body.dataset.ready = "1";
  } finally {
    loading = false;
  }
  // the sentinel may still be in view after a short page
  if (cursor && id === run && visible($("more"))) loadPage(id);
}

function visible(el) {
  const r = el.getBoundingClientRect();
  return r.top < window.innerHeight && r.bottom >= 0;
}

// ---- histogram ----

function seriesColor(value, i) {
  if (value === null) return "#d0d5dd";
  if (view.by !== "level") return PALETTE[i % PALETTE.length];
  return LEVEL_COLORS[String(value).toLowerCase()] || PALETTE[i % PALETTE.length];
}

let chartSeq = 0; // the newest chart asked for; an older answer is dropped

async function histogram(id) {
  const seq = ++chartSeq;
  const current = () => id === run && seq === chartSeq;
  const p = filterParams();
  let from = p.has("from") ? BigInt(p.get("from")) : null;
  let to = p.has("to") ? BigInt(p.get("to")) : null;
  if (from === null || to === null) {
    // the ends of what matches: the oldest and the newest record
    const edge = async (order) => {
      const e = filterParams();
      e.set("limit", "1");
      e.set("order", order);
      const r = await api("/api/v1/logs", e);
      if (!r.ok) return null;
      const [rec] = parseNdjson(await r.text());
      return rec ? parseNs(rec.timestamp) : null;
    };
    if (from === null) from = await edge("asc");
    if (to === null) to = view.range in RANGES ? nowNs() : await edge("desc");
    if (!current()) return;
    if (from === null || to === null) return drawHistogram(id, null);
    to += 1n;
  }
  if (to <= from) to = from + NS;
  const [unit, width] = niceStep(to - from);
  const h = filterParams();
  h.set("from", String(from));
  h.set("to", String(to));
  h.set("q", `${view.q.split("|")[0].trim() || "*"} | histogram ${unit} by (${view.by}) | limit 6`);
  const r = await api("/api/v1/query", h);
  if (!current()) return;
  if (!r.ok) {
    showError(await failure(r));
    return drawHistogram(id, null);
  }
  const res = await r.json();
  if (!current()) return;
  bounds = [from, to];
  step = width;
  drawHistogram(id, res);
}

function drawHistogram(id, res) {
  if (id !== run) return;
  const svg = $("hist");
  svg.replaceChildren();
  $("legend").replaceChildren();
  const series = res ? [...res.series] : [];
  if (res && res.other && res.other.count) series.push({ value: "other", count: res.other.count, buckets: res.other.buckets });
  const total = series.reduce((s, x) => s + x.count, 0);
  svg.dataset.total = String(total);
  $("count").textContent = res ? `${total.toLocaleString()} records` : "";
  if (!res || !bounds) return;
  const W = svg.clientWidth || 800;
  const H = svg.clientHeight || 110;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const n = Number((bounds[1] - bounds[0] + step - 1n) / step) || 1;
  const base = bounds[0] - (((bounds[0] % step) + step) % step); // buckets are aligned to the epoch
  const nb = Number((bounds[1] - base + step - 1n) / step) || n;
  const stacks = Array.from({ length: nb }, () => []);
  series.forEach((s, i) => {
    for (const b of s.buckets) {
      const k = Number((parseNs(b.t) - base) / step);
      if (k >= 0 && k < nb) stacks[k].push([i, b.count]);
    }
  });
  const max = Math.max(1, ...stacks.map((st) => st.reduce((a, [, c]) => a + c, 0)));
  const bw = W / nb;
  const plotH = H - 14;
  const ns = "http://www.w3.org/2000/svg";
  stacks.forEach((st, k) => {
    let y = plotH;
    for (const [i, c] of st) {
      const h = (c / max) * (plotH - 2);
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(k * bw + 0.5));
      rect.setAttribute("width", String(Math.max(1, bw - 1)));
      rect.setAttribute("y", String(y - h));
      rect.setAttribute("height", String(h));
      rect.style.fill = seriesColor(series[i].value, i);
      rect.dataset.count = String(c);
      const title = document.createElementNS(ns, "title");
      const t0 = base + BigInt(k) * step;
      title.textContent = `${formatNs(t0, view.utc, false)}  ${series[i].value ?? `(no ${view.by})`}: ${c}`;
      rect.append(title);
      svg.append(rect);
      y -= h;
    }
  });
  for (const [x, anchor, t] of [[2, "start", bounds[0]], [W - 2, "end", bounds[1]]]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(x));
    label.setAttribute("y", String(H - 2));
    label.setAttribute("text-anchor", anchor);
    label.textContent = formatNs(t, view.utc, false).slice(0, 19);
    svg.append(label);
  }
  series.forEach((s, i) => {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = seriesColor(s.value, i);
    item.append(sw, `${s.value ?? `(no ${view.by})`} ${s.count.toLocaleString()}`);
    $("legend").append(item);
  });
  svg.dataset.base = String(base);
  svg.dataset.buckets = String(nb);
}

/** Drag across the chart: zoom to that range; a click: narrow to the bar's bucket. */
function chartSelection() {
  const svg = $("hist");
  let x0 = null;
  let sel = null;
  const timeAt = (x) => {
    const W = svg.clientWidth || 800;
    const base = BigInt(svg.dataset.base);
    const nb = Number(svg.dataset.buckets);
    const span = BigInt(nb) * step;
    return base + (span * BigInt(Math.round(Math.min(Math.max(x, 0), W) * 1000))) / BigInt(Math.round(W * 1000));
  };
  svg.addEventListener("mousedown", (e) => {
    if (!bounds || !svg.dataset.base) return;
    x0 = e.offsetX;
    sel = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    sel.setAttribute("class", "sel");
    sel.setAttribute("y", "0");
    sel.setAttribute("height", String(svg.clientHeight));
    svg.append(sel);
  });
  svg.addEventListener("mousemove", (e) => {
    if (x0 === null) return;
    sel.setAttribute("x", String(Math.min(x0, e.offsetX)));
    sel.setAttribute("width", String(Math.abs(e.offsetX - x0)));
  });
  const end = (e) => {
    if (x0 === null) return;
    const x1 = e.offsetX;
    let from, to;
    if (Math.abs(x1 - x0) < 3) {
      const t = timeAt(x0);
      from = BigInt(svg.dataset.base) + ((t - BigInt(svg.dataset.base)) / step) * step;
      to = from + step;
    } else {
      from = timeAt(Math.min(x0, x1));
      to = timeAt(Math.max(x0, x1));
    }
    x0 = null;
    sel?.remove();
    view.range = "custom";
    view.from = String(from);
    view.to = String(to);
    showView();
    start();
  };
  svg.addEventListener("mouseup", end);
  svg.addEventListener("mouseleave", (e) => x0 !== null && end(e));
}

// ---- facets ----

const FACET_KEYS = ["level", "env", "region", "host"];

/** The top values of a few tag keys among the matches (`| count by (key)`), each a chip that
 * adds `key=value` to the query (Alt+click: excludes it). Keys are the usual ones plus those
 * of the first page's records. */
async function facets(id, seen) {
  const keys = [...new Set([...FACET_KEYS.filter((k) => seen.has(k)), ...seen])].slice(0, 4);
  const box = $("facets");
  box.replaceChildren();
  for (const k of keys) {
    const p = filterParams();
    p.set("q", `${view.q.split("|")[0].trim() || "*"} | count by (${k}) | limit 5`);
    const r = await api("/api/v1/query", p);
    if (id !== run) return;
    if (!r.ok) continue;
    const res = await r.json();
    const group = document.createElement("div");
    group.className = "facet";
    group.dataset.key = k;
    const title = document.createElement("b");
    title.textContent = res.distinct > 5 ? `${k} (${res.distinct})` : k;
    group.append(title);
    for (const v of res.values) {
      if (v.value === null || v.value === "") continue;
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      if (k === "level") chip.classList.add(`l-${String(v.value).toLowerCase()}`);
      chip.dataset.value = v.value;
      chip.dataset.count = String(v.count);
      chip.title = "add to the query (Alt+click: exclude)";
      const n = document.createElement("span");
      n.textContent = v.count.toLocaleString();
      chip.append(String(v.value), n);
      const term = tagTerm(`${k}=${v.value}`);
      chip.addEventListener("click", (e) => addTerm(e.altKey ? `-${term}` : term));
      group.append(chip);
    }
    box.append(group);
  }
}

// ---- live tail ----

async function toggleTail() {
  if (tail) {
    tail.abort();
    tail = null;
    $("tail").textContent = "tail";
    $("tail").setAttribute("aria-pressed", "false");
    return;
  }
  const ctrl = new AbortController();
  tail = ctrl;
  $("tail").textContent = "stop tail";
  $("tail").setAttribute("aria-pressed", "true");
  const p = new URLSearchParams();
  if (view.q.trim()) p.set("q", view.q.trim());
  let skipped = 0;
  try {
    const r = await api("/api/v1/tail", p, { signal: ctrl.signal });
    if (!r.ok) {
      showError(await failure(r));
      return;
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    const words = highlights();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const kind = (event.match(/^event: (.*)$/m) || [])[1] || "message";
        const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data) continue;
        const v = JSON.parse(data);
        if (kind === "skipped") {
          skipped += v.records || 0;
          $("tail-info").textContent = ` · tail: ${skipped} skipped`;
        } else if (v.message !== undefined) {
          $("records").prepend(recordNode(v, words));
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(e);
  } finally {
    if (tail === ctrl) {
      tail = null;
      $("tail").textContent = "tail";
    }
  }
}

// ---- putting it together ----

function start() {
  run += 1;
  const id = run;
  toUrl();
  showError(null);
  cursor = null;
  bounds = null;
  $("records").replaceChildren();
  $("facets").replaceChildren();
  $("more").textContent = "loading…";
  $("cost").textContent = "";
  $("count").textContent = "";
  delete document.body.dataset.ready;
  try {
    filterParams();
  } catch (e) {
    showError(e);
    return;
  }
  const explain = new URLSearchParams();
  if (view.q.trim()) explain.set("q", view.q.trim());
  $("explain").href = `/api/v1/explain?${explain}`;
  loadPage(id);
  histogram(id);
}

function curlCommand() {
  const p = filterParams();
  p.set("limit", String(PAGE));
  const auth = token ? ` -H "Authorization: Bearer $LOGPIPE_TOKEN"` : "";
  return `curl -s${auth} '${location.origin}/api/v1/logs?${p}'`;
}

function cliCommand() {
  const p = filterParams();
  const sh = (s) => `'${s.replace(/'/g, "'\\''")}'`;
  let cmd = `logpipe query --server ${location.origin}`;
  if (p.has("from")) cmd += ` --from ${p.get("from")}`;
  if (p.has("to")) cmd += ` --to ${p.get("to")}`;
  if (view.asc) cmd += " --order asc";
  return p.has("q") ? `${cmd} ${sh(p.get("q"))}` : cmd;
}

function wire() {
  const status = $("status");
  status.innerHTML = `<span id="count"></span><span id="cost"></span><span id="tail-info"></span> · <a id="explain" href="/api/v1/explain">explain</a> · <button id="tail" type="button" aria-pressed="false">tail</button>`;
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    view.q = $("q").value;
    start();
  });
  $("q").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      view.q = $("q").value;
      start();
    }
  });
  $("range").addEventListener("change", () => {
    view.range = $("range").value;
    $("custom").hidden = view.range !== "custom";
    if (view.range !== "custom") start();
  });
  for (const id of ["from", "to"]) {
    $(id).addEventListener("change", () => {
      view[id] = $(id).value.trim();
      start();
    });
  }
  $("by").addEventListener("change", () => {
    view.by = $("by").value;
    toUrl();
    histogram(run);
  });
  $("asc").addEventListener("change", () => {
    view.asc = $("asc").checked;
    start();
  });
  $("utc").addEventListener("change", () => {
    view.utc = $("utc").checked;
    start();
  });
  $("copy-curl").addEventListener("click", () => navigator.clipboard?.writeText(curlCommand()));
  $("copy-cli").addEventListener("click", () => navigator.clipboard?.writeText(cliCommand()));
  $("tail").addEventListener("click", toggleTail);
  document.addEventListener("keydown", (e) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
    if (e.key === "?" && !typing) $("help").showModal();
    if (e.key === "/" && !typing) {
      e.preventDefault();
      $("q").focus();
    }
  });
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && cursor) loadPage(run);
  }).observe($("more"));
  chartSelection();
  window.addEventListener("resize", () => bounds && histogram(run));
}

wire();
showView();
start();
