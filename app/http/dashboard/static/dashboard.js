// Live daemon dashboard: plain JavaScript, no build step, no outside resources.
// Reads only the side-effect-free views (/api/daemons, /api/events, /api/daemon/uptime,
// /api/daemon/metrics);
// never /api/daemon/health, whose stale report is once-only and belongs to alerting.
"use strict";
(() => {
  const KEY = "daemonHealth.apiKey"; // sessionStorage only: never the URL, never localStorage
  const MAX_EVENTS = 50;
  const PAGE = 500; // /api/events' largest page
  const api = document.body.dataset.api;
  const requested = Number(new URLSearchParams(location.search).get("poll"));
  const POLL_MS = Number.isFinite(requested) && requested >= 100 ? requested : 5000;
  const UPTIME_EVERY_MS = POLL_MS * 12; // 60 s at the default 5 s
  const $ = (id) => document.getElementById(id);

  let run = 0; // bumped to cancel every loop and drop every in-flight answer
  let fleet = null, fleetAt = 0, uptime = new Map(), taskMetrics = new Map();
  let lastEventId = 0, caughtUp = false;
  const rows = new Map(); // daemonId -> <tr>, updated in place (no churn under a reader or a selection)
  let failure = null;
  let skew = { lo: -Infinity, hi: Infinity, at: NaN }; // (server clock - browser clock), ms

  class AuthError extends Error {}
  class Cancelled extends Error {} // an answer that arrived after the key changed or was forgotten

  // --- the server's clock, from the Date header of each answer --------------------------
  // The header has whole seconds: the server's time was in [date, date + 1 s) somewhere
  // between sending (t0) and receiving (t1). Intersecting these windows narrows the offset;
  // an empty intersection means a clock jumped, so start again from this answer. The
  // estimate moves only when it falls outside the window, so ages do not jitter.
  function learnSkew(header, t0, t1) {
    const date = Date.parse(header || "");
    if (Number.isNaN(date)) return;
    const lo = date - t1, hi = date + 1000 - t0;
    skew = lo > skew.hi || hi < skew.lo ? { lo, hi, at: NaN }
      : { lo: Math.max(lo, skew.lo), hi: Math.min(hi, skew.hi), at: skew.at };
    skew.at = Number.isNaN(skew.at) ? (skew.lo + skew.hi) / 2
      : Math.min(Math.max(skew.at, skew.lo), skew.hi);
  }
  const serverNow = () => Date.now() + (Number.isFinite(skew.at) ? skew.at : 0);

  function ago(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  const clockTime = (iso) => new Date(iso).toLocaleString([], {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });

  // --- HTTP ---------------------------------------------------------------------------
  async function get(path) {
    const key = sessionStorage.getItem(KEY), mine = run;
    if (!key) throw new AuthError("no key");
    const t0 = Date.now();
    const res = await fetch(api + path, {
      headers: { "X-API-Key": key, Accept: "application/json" }, cache: "no-store",
    });
    learnSkew(res.headers.get("Date"), t0, Date.now());
    if (res.status === 401) throw new AuthError("rejected");
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(`HTTP ${res.status}${body.error ? `: ${body.error}` : ""}`);
    }
    const body = await res.json();
    if (mine !== run) throw new Cancelled();
    return body;
  }

  function loop(task, every, mine) {
    const step = async () => {
      if (mine !== run) return;
      try {
        await task();
        if (mine === run) setFailure(null);
      } catch (err) {
        if (mine !== run) return;
        if (err instanceof AuthError) return askForKey("That key was not accepted. Enter it again.");
        setFailure(err instanceof TypeError ? "network error" : err.message);
      }
      if (mine === run) setTimeout(step, every);
    };
    step();
  }

  // --- data ---------------------------------------------------------------------------
  async function pollFleet() {
    const body = await get("/daemons");
    fleet = body;
    fleetAt = Date.now();
    renderFleet();
  }

  async function pollEvents() {
    // The feed only pages forward: read up to the newest, keeping the last MAX_EVENTS.
    const list = $("events"), wentStale = [];
    for (let pages = 0; pages < 10; pages++) {
      const body = await get(`/events?after=${lastEventId}&limit=${PAGE}`);
      for (const event of body.events) {
        list.prepend(eventItem(event, caughtUp)); // history read at start is not news
        if (caughtUp && event.kind === "stale") wentStale.push(event);
      }
      while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
      if (caughtUp && body.events.length) pollUptime().catch(() => {}); // news moves uptime
      lastEventId = body.lastId;
      if (body.events.length < PAGE) { caughtUp = true; break; }
    }
    if (wentStale.length) {
      $("announce").textContent = wentStale.map(
        (e) => `Daemon ${e.daemonId} went stale at ${clockTime(e.occurredAt)}.`).join(" ");
    }
  }

  async function pollUptime() {
    const body = await get("/daemon/uptime?window=24h");
    uptime = new Map(body.daemons.map((d) => [d.daemonId, d]));
    if (fleet) renderFleet();
  }

  async function pollTaskMetrics() {
    const body = await get("/daemon/metrics?window=24h");
    taskMetrics = new Map(body.daemons.map((d) => [d.daemonId, d]));
    if (fleet) renderFleet();
  }

  // --- rendering (textContent only: every value is data, never markup) --------------------
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }
  function none() {
    const cell = el("span", "—", "muted");
    cell.setAttribute("aria-hidden", "true");
    const wrap = el("span");
    wrap.append(cell, el("span", "none", "visually-hidden"));
    return wrap;
  }
  function badge(d) {
    const wrap = el("span");
    if (d.stale) {
      wrap.append(el("span", "stale", "badge st-stale"), el("span", ` was ${d.status}`, "muted small"));
    } else {
      wrap.append(el("span", d.status, `badge st-${d.status}`));
    }
    if (d.maintenance) { // planned work: the server says which running window covers it
      const until = `${d.maintenance.reason}, until ${clockTime(d.maintenance.to)}`;
      const tag = el("span", "maintenance", "badge st-maintenance");
      tag.title = until;
      wrap.append(tag, el("span", ` (${until})`, "visually-hidden"));
    }
    return wrap;
  }
  function uptimeText(id) {
    const u = uptime.get(id);
    if (!u || u.uptimeRatio === null) return null;
    const pct = u.uptimeRatio === 1 ? "100" : (Math.floor(u.uptimeRatio * 10000) / 100).toFixed(2);
    return u.incidents ? `${pct} % (${u.incidents} incident${u.incidents === 1 ? "" : "s"})` : `${pct} %`;
  }

  function errorRateText(id) {
    const m = taskMetrics.get(id);
    if (!m || m.errorRate === null) return null;
    return `${(m.errorRate * 100).toFixed(2)} % of ${m.tasks.toLocaleString("en")}`;
  }
  function avgTaskText(id) {
    const m = taskMetrics.get(id);
    return !m || m.avgResponseTimeMs === null ? null : `${m.avgResponseTimeMs.toLocaleString("en")} ms`;
  }

  // Replace a cell's content only when what it shows changed.
  function put(td, value, make = () => (value === null || value === "" ? none() : String(value))) {
    const key = JSON.stringify(value);
    if (td.dataset.key !== key) {
      td.dataset.key = key;
      td.replaceChildren(make());
    }
  }

  function newRow(daemonId) {
    const id = el("th", daemonId, "id");
    id.scope = "row";
    const classes = ["status", "", "age", "", "", "num", "", "num", "num", "num"];
    const tr = el("tr");
    tr.append(...classes.map((c, i) => (i === 1 ? id : el("td", undefined, c))));
    return tr;
  }

  function renderFleet() {
    $("count-active").textContent = fleet.totalActive;
    $("count-stale").textContent = fleet.totalStale;
    const tbody = document.querySelector("#daemons tbody");
    const present = new Set(fleet.daemons.map((d) => d.daemonId));
    for (const [id, tr] of rows) if (!present.has(id)) { tr.remove(); rows.delete(id); }
    let before = tbody.firstElementChild;
    for (const d of fleet.daemons) {
      if (!rows.has(d.daemonId)) rows.set(d.daemonId, newRow(d.daemonId));
      const tr = rows.get(d.daemonId);
      const [status, , seen, version, caps, tasks, task, up, errors, avg] = tr.children;
      tr.className = d.stale ? "stale" : "";
      put(status, [d.stale, d.status, d.maintenance], () => badge(d));
      put(seen, d.lastHeartbeat, () => {
        const time = el("time");
        time.dateTime = d.lastHeartbeat;
        time.title = `last heartbeat received ${d.lastHeartbeat}`;
        return time;
      });
      put(version, d.version);
      put(caps, d.capabilities.join(", "));
      put(tasks, d.tasksProcessed.toLocaleString("en"));
      put(task, d.currentTask);
      put(up, uptimeText(d.daemonId));
      put(errors, errorRateText(d.daemonId));
      put(avg, avgTaskText(d.daemonId));
      if (tr !== before) tbody.insertBefore(tr, before); else before = before.nextElementSibling;
    }
    if (!fleet.daemons.length && !tbody.children.length) {
      const td = el("td", "No daemons registered.", "empty");
      td.colSpan = 10;
      tbody.append(el("tr"));
      tbody.firstElementChild.append(td);
    } else if (fleet.daemons.length) {
      tbody.querySelector("td.empty")?.parentElement.remove();
    }
    tickClock();
  }

  function eventItem(e, fresh) {
    const li = el("li", undefined, `event kind-${e.kind}`);
    if (fresh) {
      li.dataset.arrived = Date.now();
      li.append(el("span", "new", "new"), " ");
    }
    const when = el("time", clockTime(e.occurredAt), "muted");
    when.dateTime = e.occurredAt;
    const detail = e.kind === "stale" ? ` (was ${e.state?.status ?? "unknown"})`
      : e.kind === "status_changed" ? ` → ${e.status}`
      : e.kind === "registered" ? ` version ${e.state?.version ?? "?"}` : "";
    li.append(when, " ", el("span", e.kind.replace("_", " "), "kind"), " ", el("strong", e.daemonId), detail);
    return li;
  }

  // Every second: ages count up, and the banner says how old the shown data is.
  function tickClock() {
    const now = serverNow();
    for (const t of document.querySelectorAll("#daemons td.age time")) {
      const text = ago(now - Date.parse(t.dateTime));
      if (t.textContent !== text) t.textContent = text;
    }
    for (const li of document.querySelectorAll("#events li[data-arrived]")) {
      if (Date.now() - Number(li.dataset.arrived) > 60000) {
        li.querySelector(".new").remove();
        delete li.dataset.arrived;
      }
    }
    const age = fleetAt ? ago(Date.now() - fleetAt) : "";
    $("updated").textContent = fleetAt ? `Updated ${age}` : "";
    $("data-age").textContent = failure && fleetAt ? `(data from ${age}, not current)` : "";
    if (failure) {
      $("banner").textContent = `The API is unreachable (${failure}). ` +
        (fleetAt ? `Showing the last data, from ${age}; retrying.` : "Retrying.");
    }
  }

  function setFailure(message) {
    failure = message;
    $("banner").hidden = !message;
    if (!message) $("banner").textContent = "";
    $("board").classList.toggle("old", Boolean(message));
    tickClock();
  }

  // --- the key --------------------------------------------------------------------------
  function reset() {
    run += 1;
    fleet = null; fleetAt = 0; uptime = new Map(); taskMetrics = new Map(); lastEventId = 0; caughtUp = false;
    rows.clear();
    setFailure(null);
    document.querySelector("#daemons tbody").replaceChildren();
    $("events").replaceChildren();
    $("announce").textContent = "";
  }

  function askForKey(message) {
    sessionStorage.removeItem(KEY);
    reset();
    $("board").hidden = $("summary").hidden = $("forget").hidden = true;
    $("key-error").textContent = message || "";
    $("key-error").hidden = !message;
    $("key-form").hidden = false;
    $("api-key").value = "";
    $("api-key").focus();
  }

  function start() {
    reset();
    $("key-form").hidden = true;
    $("board").hidden = $("summary").hidden = $("forget").hidden = false;
    const mine = run;
    loop(async () => { await pollFleet(); await pollEvents(); }, POLL_MS, mine);
    loop(pollUptime, UPTIME_EVERY_MS, mine);
    loop(pollTaskMetrics, UPTIME_EVERY_MS, mine);
    $("board").focus();
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    $("api-key").value = "";
    sessionStorage.setItem(KEY, key);
    start();
  });
  $("forget").addEventListener("click", () => askForKey());
  setInterval(tickClock, 1000);
  if (sessionStorage.getItem(KEY)) start(); else askForKey();
})();
