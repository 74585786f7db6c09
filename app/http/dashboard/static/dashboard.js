// Operator's console: plain JavaScript, no build step, no outside resources.
// Reads only side-effect-free views (/api/daemons, /api/daemons/history, /api/events,
// /api/regions, /api/leases, one daemon's /uptime and /metrics); never /api/daemon/health,
// whose stale report is once-only and belongs to alerting. What it asks for follows the
// screen, not the fleet: one page of daemons, the history of the daemons on that page, the
// events since the last poll, and the regions and leases (a handful each, not per daemon).
"use strict";
(() => {
  const KEY = "daemonHealth.apiKey"; // sessionStorage only: never the URL, never localStorage
  const PAGE_SIZE = 50;
  const MAX_EVENTS = 50;
  const EVENTS_PAGE = 500; // /api/events' largest page
  const SLOTS = 48; // half hours in the 24 h strip
  const WINDOWS = ["24h", "7d", "30d"];
  const body = document.body;
  const api = body.dataset.api, home = body.dataset.home, faviconUrl = body.dataset.favicon;
  const requested = Number(new URLSearchParams(location.search).get("poll"));
  const POLL_MS = Number.isFinite(requested) && requested >= 100 ? requested : 5000;
  const HISTORY_EVERY_MS = POLL_MS * 12; // 60 s at the default 5 s
  // Regions and leases change at the pace of a TTL (a holder or a region goes silent for
  // one before anything moves), so every third poll: 15 s at the default 5 s.
  const AROUND_EVERY_MS = POLL_MS * 3;
  const $ = (id) => document.getElementById(id);
  const filterControls = [...document.querySelectorAll("#filters [data-param]")];

  let run = 0; // bumped to cancel every loop and drop every in-flight answer
  let failure = null, fleetAt = 0, shownStale = -1;
  let skew = { lo: -Infinity, hi: Infinity, at: NaN }; // (server clock - browser clock), ms
  // The list: the current page and how we got there, its rows (updated in place), their history.
  let page = null, cursors = [], recent = new Map(), historyAt = 0, historyIds = "";
  const rows = new Map(); // daemonId -> <tr>
  let lastEventId = null, caughtUp = false;
  const capabilities = new Set();
  let regionNames = [], aroundShown = "", heldShown = "";
  let disrupted = null; // the regions disrupted at the last read (null: none read yet)

  class AuthError extends Error {}
  class Cancelled extends Error {} // an answer that arrived after the view, filters or key changed
  class HttpError extends Error {
    constructor(status, body) {
      super(`HTTP ${status}${body.error ? `: ${body.error}` : ""}`);
      this.status = status;
      this.body = body;
    }
  }

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

  // --- words for numbers and times --------------------------------------------------------
  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
    if (s < 86400) return `${Math.floor(s / 3600)} h${s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)} min` : ""}`;
    return `${Math.floor(s / 86400)} d${s % 86400 >= 3600 ? ` ${Math.floor((s % 86400) / 3600)} h` : ""}`;
  }
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
  const hourMinute = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  const count = (n) => n.toLocaleString("en");
  const percent = (ratio) => (ratio === 1 ? "100" : (Math.floor(ratio * 10000) / 100).toFixed(2));
  const plural = (n, word) => `${count(n)} ${word}${n === 1 ? "" : "s"}`;
  // Whole milliseconds once they are many; a tenth below 10 ms.
  const milliseconds = (ms) => `${ms >= 10 ? count(Math.round(ms)) : ms.toFixed(1)} ms`;

  // --- where we are: the URL is the state (shareable; the key is never in it) --------------
  function view() {
    const prefix = `${home}/daemons/`;
    if (location.pathname.startsWith(prefix)) {
      const search = new URLSearchParams(location.search);
      const period = WINDOWS.includes(search.get("window")) ? search.get("window") : "24h";
      return { name: "detail", id: decodeURIComponent(location.pathname.slice(prefix.length)), period };
    }
    return { name: "list" };
  }
  // Filters as the URL and the API spell them: each control's data-param is a query parameter.
  function filters() {
    const search = new URLSearchParams(location.search), chosen = new URLSearchParams();
    for (const control of filterControls) {
      const value = (search.get(control.dataset.param) || "").trim();
      if (value) chosen.set(control.dataset.param, value);
    }
    return chosen;
  }
  // Internal URLs keep ?poll= (a test's or an operator's choice of refresh rate).
  function withPoll(url) {
    const poll = new URLSearchParams(location.search).get("poll");
    if (!poll) return url;
    const target = new URL(url, location.href);
    target.searchParams.set("poll", poll);
    return target.pathname + target.search;
  }
  function navigate(url, { replace = false } = {}) {
    window.history[replace ? "replaceState" : "pushState"](null, "", withPoll(url));
    show();
  }

  // --- HTTP ---------------------------------------------------------------------------
  async function get(path) {
    const key = sessionStorage.getItem(KEY), mine = run;
    if (!key) throw new AuthError("no key");
    const t0 = Date.now();
    const res = await fetch(api + path, {
      headers: { "X-API-Key": key, Accept: "application/json" }, cache: "no-store",
    });
    learnSkew(res.headers.get("Date"), t0, Date.now());
    if (mine !== run) throw new Cancelled();
    if (res.status === 401) throw new AuthError("rejected");
    if (!res.ok) throw new HttpError(res.status, await res.json().catch(() => ({})));
    const answer = await res.json();
    if (mine !== run) throw new Cancelled();
    return answer;
  }

  function loop(task, every, mine) {
    const step = async () => {
      if (mine !== run) return;
      try {
        await task();
        if (mine === run) setFailure(null);
      } catch (err) {
        if (mine !== run || err instanceof Cancelled) return;
        if (err instanceof AuthError) return askForKey("That key was not accepted. Enter it again.");
        setFailure(err instanceof TypeError ? "network error" : err.message);
      }
      if (mine === run) setTimeout(step, every);
    };
    step();
  }

  // --- rendering helpers (textContent only: every value is data, never markup) ---------------
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attributes = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }
  function none() {
    const wrap = el("span");
    const dash = el("span", "—", "muted");
    dash.setAttribute("aria-hidden", "true");
    wrap.append(dash, el("span", "none", "visually-hidden"));
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
  function daemonLink(id) {
    const a = el("a", id);
    a.href = withPoll(`${home}/daemons/${encodeURIComponent(id)}`);
    return a;
  }
  // Replace a cell's content only when what it shows changed.
  function put(cell, value, make = () => (value === null || value === "" ? none() : String(value))) {
    const key = JSON.stringify(value);
    if (cell.dataset.key !== key) {
      cell.dataset.key = key;
      cell.replaceChildren(make());
    }
  }

  // --- header: counts, tab title, favicon -------------------------------------------------
  function renderCounts(fleet, title) {
    for (const status of ["stale", "unhealthy", "degraded", "healthy"]) {
      const n = fleet.counts[status];
      $(`count-${status}`).textContent = count(n);
      // Coloured only when something is wrong (a healthy count is never an alarm).
      $(`count-${status}`).parentElement.classList.toggle("alarm", status !== "healthy" && n > 0);
    }
    $("count-active").textContent = count(fleet.totalActive);
    const stale = fleet.counts.stale;
    document.title = `${stale ? `(${count(stale)} stale) ` : ""}${title ? `${title} · ` : ""}Daemon health`;
    if (stale !== shownStale) {
      shownStale = stale;
      $("favicon").href = stale ? `${faviconUrl}?stale=${stale}` : faviconUrl;
    }
    fleetAt = Date.now();
  }

  // --- the list -------------------------------------------------------------------------
  const COLUMNS = [
    ["status", "Status"], ["id", "Daemon"], ["history", "Last 24 h"], ["num uptime", "Uptime 24 h"],
    ["age", "Last seen"], ["region", "Region"], ["opt wide", "Version"], ["opt", "Capabilities"], ["num opt", "Tasks processed"],
    ["opt wide", "Current task"], ["num", "Errors 24 h"], ["num", "Avg task 24 h"], ["chart", "Tasks 24 h"],
  ];

  function listQuery(cursor) {
    const query = filters();
    query.set("sort", "status");
    query.set("limit", PAGE_SIZE);
    if (cursor) query.set("cursor", cursor);
    return query;
  }

  async function pollFleet() {
    const started = performance.now();
    let fleet;
    try {
      fleet = await get(`/daemons?${listQuery(cursors.at(-1))}`);
    } catch (err) {
      // A cursor can outlive its row's place (a daemon deregistered): start from the first page.
      if (err instanceof HttpError && err.status === 400 && err.body.details?.cursor) {
        cursors = [];
        return pollFleet();
      }
      throw err;
    }
    page = fleet;
    renderCounts(fleet);
    renderList();
    if (!performance.getEntriesByName("first-render").length) performance.mark("first-render");
    performance.measure("refresh", { start: started, end: performance.now() });
    const ids = fleet.daemons.map((d) => d.daemonId).join(",");
    if (ids && ids !== historyIds) pollHistory().catch(() => {}); // a new page: its history at once
  }

  async function pollHistory() {
    if (!page || !page.daemons.length) return;
    const ids = page.daemons.map((d) => d.daemonId).join(",");
    historyIds = ids;
    historyAt = Date.now();
    const answer = await get(`/daemons/history?ids=${encodeURIComponent(ids)}&window=24h&slots=${SLOTS}`);
    recent = new Map(answer.daemons.map((d) => [d.daemonId, { ...d, from: answer.from, slotSeconds: answer.slotSeconds }]));
    renderList();
  }

  function newRow(daemonId) {
    const tr = el("tr");
    for (const [className, label] of COLUMNS) {
      const cell = className === "id" ? el("th", undefined, "id") : el("td", undefined, className);
      if (className === "id") {
        cell.scope = "row";
        cell.append(daemonLink(daemonId));
      }
      cell.dataset.label = label; // shown beside the value when the table becomes cards
      tr.append(cell);
    }
    return tr;
  }

  function renderList() {
    const tbody = document.querySelector("#daemons tbody");
    const present = new Set(page.daemons.map((d) => d.daemonId));
    for (const [id, tr] of rows) if (!present.has(id)) { tr.remove(); rows.delete(id); }
    let before = tbody.firstElementChild;
    for (const d of page.daemons) {
      d.capabilities.forEach((c) => capabilities.add(c));
      if (!rows.has(d.daemonId)) rows.set(d.daemonId, newRow(d.daemonId));
      const tr = rows.get(d.daemonId);
      const [status, , strip, up, seen, region, version, caps, tasks, task, errors, avg, spark] = tr.children;
      const h = recent.get(d.daemonId);
      tr.className = d.stale ? "stale" : `is-${d.status}`;
      put(status, [d.stale, d.status, d.maintenance], () => badge(d));
      put(strip, h ? [h.from, h.slots] : null, () => (h ? historyStrip(h) : none()));
      put(up, h?.uptime ? [h.uptime.uptimeRatio, h.uptime.incidents] : null, () => uptimeCell(h?.uptime));
      put(seen, d.lastHeartbeat, () => {
        const time = el("time");
        time.dateTime = d.lastHeartbeat;
        time.title = `last heartbeat received ${d.lastHeartbeat}`;
        return time;
      });
      put(region, d.region);
      put(version, d.version);
      put(caps, d.capabilities.join(", "));
      put(tasks, count(d.tasksProcessed));
      put(task, d.currentTask);
      put(errors, h && h.tasks.errorRate !== null
        ? `${(h.tasks.errorRate * 100).toFixed(2)} % of ${count(h.tasks.tasks)}` : null);
      put(avg, h && h.tasks.avgResponseTimeMs !== null ? milliseconds(h.tasks.avgResponseTimeMs) : null);
      put(spark, h ? h.taskSlots : null, () => (h && h.tasks.tasks ? sparkline(h) : none()));
      if (tr !== before) tbody.insertBefore(tr, before); else before = before.nextElementSibling;
    }
    const empty = tbody.querySelector("td.empty");
    if (!page.daemons.length && !empty) {
      const td = el("td", filters().toString() ? "No daemon matches these filters." : "No daemons registered.", "empty");
      td.colSpan = COLUMNS.length;
      tbody.append(el("tr"));
      tbody.lastElementChild.append(td);
    } else if (page.daemons.length && empty) {
      empty.parentElement.remove();
    }
    const first = cursors.length * PAGE_SIZE + 1, last = first + page.daemons.length - 1;
    const where = page.daemons.length ? `${count(first)}–${count(last)} of ${count(page.matching)}` : "none";
    $("matching").textContent = `(${where}${filters().toString() ? " matching" : ""}, problems first)`;
    $("page-info").textContent = page.daemons.length ? `${count(first)}–${count(last)} of ${count(page.matching)}` : "";
    $("page-first").disabled = $("page-prev").disabled = !cursors.length;
    $("page-next").disabled = !page.nextCursor;
    const list = $("capabilities");
    if (list.children.length !== capabilities.size) {
      list.replaceChildren(...[...capabilities].sort().map((c) => { const o = el("option"); o.value = c; return o; }));
    }
    tickClock();
  }

  function uptimeCell(u) {
    if (!u || u.uptimeRatio === null) return none();
    const cell = el("span", `${percent(u.uptimeRatio)} %`);
    if (u.incidents) cell.append(el("span", plural(u.incidents, "incident"), "muted small block"));
    return cell;
  }

  // The 24 h strip: one element whose background holds every slot (a bounded DOM however
  // long the history), its words in the accessible name and the tooltip.
  const SLOT_WORDS = { up: "up", planned: "stopped (planned)", degraded: "degraded", unhealthy: "unhealthy", down: "down" };
  function runs(slots) {
    const found = [];
    slots.forEach((state, i) => {
      if (found.length && found.at(-1).state === state) found.at(-1).end = i + 1;
      else found.push({ state, start: i, end: i + 1 });
    });
    return found;
  }
  function historyStrip(h) {
    const strip = el("span", undefined, "strip");
    const all = runs(h.slots), width = 100 / h.slots.length;
    strip.style.backgroundImage = `linear-gradient(to right, ${all.map((r) =>
      `var(--slot-${r.state ?? "none"}) ${r.start * width}% ${r.end * width}%`).join(", ")})`;
    const at = (i) => hourMinute(Date.parse(h.from) + i * h.slotSeconds * 1000);
    const notable = all.filter((r) => r.state && r.state !== "up");
    const words = notable.slice(0, 4).map((r) => `${SLOT_WORDS[r.state]} ${at(r.start)}–${at(r.end)}`);
    if (notable.length > 4) words.push(`and ${notable.length - 4} more`);
    const label = `Last 24 h: ${notable.length ? words.join(", ") : all.some((r) => r.state) ? "up throughout" : "no history"}`;
    strip.setAttribute("role", "img");
    strip.setAttribute("aria-label", label);
    strip.title = label;
    return strip;
  }

  // Tasks per slot: a bar per slot in one path, failures over them in another.
  function sparkline(h) {
    const peak = Math.max(...h.taskSlots.map((s) => s.tasks), 1), n = h.taskSlots.length;
    const bars = (pick) => h.taskSlots.map((s, i) => {
      const height = (pick(s) / peak) * 20;
      return height ? `M${i * 2} 24v${-height.toFixed(2)}h1.6v${height.toFixed(2)}z` : "";
    }).join("");
    const chart = svg("svg", { viewBox: `0 0 ${n * 2} 24`, preserveAspectRatio: "none", class: "spark", role: "img" });
    chart.append(svg("path", { d: bars((s) => s.tasks), class: "bar" }), svg("path", { d: bars((s) => s.failedTasks), class: "bar-failed" }));
    chart.setAttribute("aria-label", `${count(h.tasks.tasks)} tasks in 24 h, ${count(h.tasks.failedTasks)} failed; busiest half hour ${count(Math.max(...h.taskSlots.map((s) => s.tasks)))}`);
    return chart;
  }

  // --- regions and leases ------------------------------------------------------------------
  async function pollAround() {
    const [regions, leases] = await Promise.all([get("/regions"), get("/leases")]);
    const shown = JSON.stringify([regions, leases.leases]);
    if (shown === aroundShown) return; // redraw only on change: a focused link keeps its focus
    aroundShown = shown;
    renderRegions(regions);
    renderLeases(leases.leases);
  }

  // A region per card: its counts, problems coloured, and a disrupted badge (a region outage).
  function renderRegions(regions) {
    const named = regions.filter((r) => r.region !== null);
    $("regions-panel").hidden = !named.length; // a fleet without regions sees no panel
    $("regions").replaceChildren(...regions.map((r) => {
      const li = el("li", undefined, `region-card${r.disrupted ? " disrupted" : ""}`);
      const name = el("strong", undefined, "name");
      if (r.region === null) name.append(el("span", "no region", "muted"));
      else name.append(regionLink(r.region));
      li.append(name);
      if (r.disrupted) li.append(" ", el("span", "disrupted", "badge st-disrupted"));
      const counts = el("p", undefined, "region-counts");
      for (const field of ["active", "stale", "unhealthy", "degraded"]) {
        // Stale and unhealthy counts in red, the alarm colour; degraded stays plain beside them.
        const n = el("span", undefined, (field === "stale" || field === "unhealthy") && r[field] ? `alarm-${field}` : "");
        n.append(el("strong", count(r[field])), ` ${field}`);
        counts.append(n, " ");
      }
      li.append(counts);
      if (r.lastHeartbeat) {
        const seen = el("p", "last heartbeat ", "muted small"), time = el("time", undefined, "age");
        time.dateTime = r.lastHeartbeat; // its text counts up with the clock (tickClock)
        seen.append(time);
        li.append(seen);
      }
      return li;
    }));
    regionNames = named.map((r) => r.region);
    regionChoices();
    announceOutages(new Set(named.filter((r) => r.disrupted).map((r) => r.region)));
    tickClock();
  }
  // For screen readers, as a new stale daemon is: outages that began or ended since the last read.
  function announceOutages(now) {
    if (disrupted) {
      const words = [...now].filter((r) => !disrupted.has(r)).map((r) => `Region ${r} is disrupted.`)
        .concat([...disrupted].filter((r) => !now.has(r)).map((r) => `Region ${r} recovered.`));
      if (words.length) $("announce").textContent = words.join(" ");
    }
    disrupted = now;
  }
  function regionLink(region) {
    const a = el("a", region);
    a.href = withPoll(`${home}?region=${encodeURIComponent(region)}`);
    return a;
  }
  // The region filter offers the regions /api/regions knows, and the URL's own (a shared link
  // may name one before the regions arrive, or one with no daemons left).
  function regionChoices() {
    const select = $("filter-region"), chosen = filters().get("region") || "";
    const names = [...new Set([...regionNames, ...(chosen ? [chosen] : [])])].sort();
    if (JSON.stringify(names) !== JSON.stringify([...select.options].slice(1).map((o) => o.value))) {
      select.replaceChildren(select.options[0], ...names.map((name) => {
        const option = el("option", name);
        option.value = name;
        return option;
      }));
    }
    select.value = chosen;
    $("region-field").hidden = !names.length;
  }

  // Who holds each lease, from when and until when (its holder's expiry, moved by heartbeats).
  function renderLeases(leases) {
    $("leases-panel").hidden = !leases.length;
    document.querySelector("#leases tbody").replaceChildren(...leases.map((lease) => {
      const tr = el("tr"), name = el("th", lease.name, "id");
      name.scope = "row";
      const holder = el("td");
      holder.append(lease.holder === null ? el("span", "free", "badge free") : daemonLink(lease.holder));
      tr.append(name, holder, el("td", count(lease.token), "num"), timeCell(lease.acquiredAt), timeCell(lease.expiresAt));
      ["Lease", "Holder", "Token", "Since", "Expires"].forEach((label, i) => { tr.children[i].dataset.label = label; });
      return tr;
    }));
  }
  function timeCell(iso) {
    const td = el("td");
    td.append(iso === null ? none() : timeOf(iso));
    return td;
  }
  function timeOf(iso) {
    const time = el("time", clockTime(iso));
    time.dateTime = iso;
    return time;
  }

  // One daemon's page: the leases it holds (none once its session ends).
  async function pollHeld() {
    const { id } = view();
    const held = (await get("/leases")).leases.filter((lease) => lease.holder === id);
    const shown = JSON.stringify(held);
    if (shown === heldShown) return;
    heldShown = shown;
    $("held").replaceChildren(...(held.length ? held.map((lease) => {
      const li = el("li");
      li.append(el("strong", lease.name, "name"), ` token ${count(lease.token)}, since `, timeOf(lease.acquiredAt),
        ", expires ", timeOf(lease.expiresAt));
      return li;
    }) : [el("li", "None.", "muted")]));
  }

  // --- events -----------------------------------------------------------------------------
  async function pollEvents() {
    // The first read takes the newest page; then the feed only pages forward from there.
    const list = $("events"), wentStale = [], touched = new Set();
    for (let pages = 0; pages < 10; pages++) {
      const answer = lastEventId === null
        ? await get(`/events?order=newest&limit=${MAX_EVENTS}`)
        : await get(`/events?after=${lastEventId}&limit=${EVENTS_PAGE}`);
      for (const event of answer.events) {
        list.prepend(eventItem(event, caughtUp)); // history read at start is not news
        if (caughtUp && event.kind === "stale") wentStale.push(event);
        touched.add(event.daemonId);
      }
      while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
      const first = lastEventId === null;
      lastEventId = answer.lastId;
      if (first || answer.events.length < EVENTS_PAGE) break;
    }
    // News about a daemon on screen moves its strip and uptime: read them again (not too often).
    if (caughtUp && page?.daemons.some((d) => touched.has(d.daemonId)) && Date.now() - historyAt > POLL_MS * 3) {
      pollHistory().catch(() => {});
    }
    caughtUp = true;
    if (wentStale.length) {
      $("announce").textContent = wentStale.map(
        (e) => `Daemon ${e.daemonId} went stale at ${clockTime(e.occurredAt)}.`).join(" ");
    }
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
    const who = el("strong");
    who.append(daemonLink(e.daemonId));
    li.append(when, " ", el("span", e.kind.replace("_", " "), "kind"), " ", who, detail);
    return li;
  }

  // --- one daemon -------------------------------------------------------------------------
  async function pollDetail() {
    const { id } = view();
    const fleet = await get(`/daemons?id=${encodeURIComponent(id)}&limit=1`);
    renderCounts(fleet, id);
    const d = fleet.daemons[0];
    $("detail-missing").hidden = Boolean(d);
    $("detail-missing").textContent = d ? "" : `${id} is not in the registry: deregistered, reported stale by /health, or never registered. Its history is below.`;
    const facts = d ? [
      ["Status", () => badge(d)],
      ["Last seen", () => { const t = el("time"); t.dateTime = d.lastHeartbeat; t.className = "age"; return t; }],
      ["Region", d.region], ["Version", d.version], ["Capabilities", d.capabilities.join(", ") || null],
      ["Tasks processed", count(d.tasksProcessed)], ["Current task", d.currentTask],
      ["Registered", clockTime(d.registeredAt)], ["Heartbeat every", duration(d.pollInterval / 1000)],
      ["Expires", clockTime(d.expiresAt)],
    ] : [];
    const dl = $("detail-state");
    if (dl.children.length !== facts.length * 2) {
      dl.replaceChildren(...facts.flatMap(([term]) => [el("dt", term), el("dd")]));
    }
    facts.forEach(([, value], i) => {
      const dd = dl.children[i * 2 + 1];
      if (typeof value === "function") put(dd, [i, d.stale, d.status, d.lastHeartbeat], value);
      else put(dd, value);
    });
    performance.mark("detail-render");
    tickClock();
  }

  async function pollDetailHistory() {
    const { id, period } = view();
    for (const a of document.querySelectorAll(".windows a")) {
      if (a.dataset.window === period) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    const [uptime, tasks] = await Promise.all([
      get(`/daemon/${encodeURIComponent(id)}/uptime?window=${period}`).catch(notFound),
      get(`/daemon/${encodeURIComponent(id)}/metrics?window=24h&step=1h`).catch(notFound),
    ]);
    renderAvailability(uptime, period);
    renderTasks(tasks);
  }
  const notFound = (err) => { if (err instanceof HttpError && err.status === 404) return null; throw err; };

  const SPLIT = [
    ["healthy", "Healthy", (u) => u.statusSeconds.healthy], ["degraded", "Degraded", (u) => u.statusSeconds.degraded],
    ["unhealthy", "Unhealthy", (u) => u.statusSeconds.unhealthy], ["down", "Down", (u) => u.downSeconds],
    ["planned", "Stopped (planned)", (u) => u.plannedDownSeconds],
  ];
  function renderAvailability(u, period) {
    const words = { "24h": "24 hours", "7d": "7 days", "30d": "30 days" }[period];
    const tbody = document.querySelector("#down-intervals tbody");
    if (!u) {
      $("detail-uptime").textContent = `No history in the last ${words}.`;
      $("split").replaceChildren();
      $("split").removeAttribute("aria-label");
      $("split").removeAttribute("role");
      $("split-legend").replaceChildren();
      tbody.replaceChildren(emptyRow("No down time in this period.", 4));
      return;
    }
    $("detail-uptime").textContent = u.uptimeRatio === null ? `No counted time in the last ${words}.`
      : `${percent(u.uptimeRatio)} % up over the last ${words}, ${plural(u.incidents, "incident")}`;
    const total = SPLIT.reduce((sum, [, , pick]) => sum + pick(u), 0) || 1;
    const parts = SPLIT.map(([key, label, pick]) => ({ key, label, seconds: pick(u) })).filter((p) => p.seconds > 0);
    $("split").replaceChildren(...parts.map((p) => {
      const segment = el("span", undefined, `seg slot-${p.key}`);
      segment.style.flexGrow = p.seconds;
      return segment;
    }));
    const legend = parts.map((p) => `${p.label} ${duration(p.seconds)} (${(p.seconds / total * 100).toFixed(1)} %)`);
    // An image only once it has words: before the answer, an unnamed image is an axe violation.
    $("split").setAttribute("role", "img");
    $("split").setAttribute("aria-label", `Time by status: ${legend.join(", ")}`);
    $("split-legend").replaceChildren(...parts.map((p, i) => {
      const li = el("li");
      li.append(el("span", undefined, `swatch slot-${p.key}`), legend[i]);
      return li;
    }));
    tbody.replaceChildren(...(u.downIntervals.length ? u.downIntervals.slice().reverse().map((i) => {
      const tr = el("tr");
      const seconds = (Date.parse(i.to) - Date.parse(i.from)) / 1000;
      tr.append(el("td", clockTime(i.from)), el("td", i.ongoing ? "ongoing" : clockTime(i.to)),
        el("td", duration(seconds), "num"), el("td", i.planned ? "planned (deregistered)" : "went silent (stale)"));
      return tr;
    }) : [emptyRow("No down time in this period.", 4)]));
  }
  function emptyRow(text, span) {
    const tr = el("tr"), td = el("td", text, "empty");
    td.colSpan = span;
    tr.append(td);
    return tr;
  }

  function renderTasks(m) {
    if (!m || !m.tasks) {
      $("detail-tasks").textContent = "No tasks reported in the last 24 hours.";
      for (const id of ["chart-tasks", "chart-errors", "chart-time"]) $(id).replaceChildren();
      return;
    }
    $("detail-tasks").textContent = `${plural(m.tasks, "task")}, ${count(m.failedTasks)} failed` +
      (m.errorRate === null ? "" : ` (${(m.errorRate * 100).toFixed(2)} %)`) +
      (m.avgResponseTimeMs === null ? "" : `, ${milliseconds(m.avgResponseTimeMs)} on average`);
    const at = m.series.map((p) => Date.parse(p.from));
    barChart($("chart-tasks"), at, m.series.map((p) => p.tasks), (v) => count(v), "tasks per hour");
    barChart($("chart-errors"), at, m.series.map((p) => p.errorRate), (v) => `${(v * 100).toFixed(1)} %`, "error rate", "bar-failed");
    barChart($("chart-time"), at, m.series.map((p) => p.avgResponseTimeMs), milliseconds, "average task time");
  }

  // A bar per hour with its peak and time axis written out; the words are its accessible name.
  function barChart(container, at, values, format, what, barClass = "bar") {
    const W = 240, H = 90, top = 14, bottom = 16, n = values.length || 1;
    const peak = Math.max(...values.filter((v) => v !== null), 0);
    const d = values.map((v, i) => {
      const h = peak && v ? (v / peak) * (H - top - bottom) : 0;
      return h ? `M${(i * W) / n + 0.5} ${H - bottom}v${-h.toFixed(2)}h${(W / n - 1).toFixed(2)}v${h.toFixed(2)}z` : "";
    }).join("");
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
    const text = (x, y, words, anchor = "start") => {
      const t = svg("text", { x, y, "text-anchor": anchor, class: "axis" });
      t.textContent = words;
      t.setAttribute("aria-hidden", "true");
      return t;
    };
    chart.append(
      svg("line", { x1: 0, x2: W, y1: H - bottom + 0.5, y2: H - bottom + 0.5, class: "baseline" }),
      svg("path", { d, class: barClass }),
      text(0, 10, `peak ${format(peak)}`),
      text(0, H - 3, "24 h ago"), text(W / 2, H - 3, "12 h ago", "middle"), text(W, H - 3, "now", "end"),
    );
    const busiest = values.indexOf(peak);
    const known = values.filter((v) => v !== null).length;
    chart.setAttribute("aria-label", known ? `${what[0].toUpperCase()}${what.slice(1)} over the last 24 hours, hourly: peak ${format(peak)} at ${hourMinute(at[busiest])}, ${known} of ${values.length} hours with tasks`
      : `No ${what} in the last 24 hours`);
    container.replaceChildren(chart);
  }

  // --- every second: ages count up; the banner says how old the shown data is -------------
  function tickClock() {
    const now = serverNow();
    for (const t of document.querySelectorAll("#daemons td.age time, #detail-state time.age, #regions time.age")) {
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
    document.querySelector("main").classList.toggle("old", Boolean(message));
    tickClock();
  }

  // --- the views, and the key -------------------------------------------------------------
  // Show what the URL names and (re)start its loops; earlier answers are dropped.
  function show() {
    run += 1;
    const mine = run, current = view();
    const signedIn = Boolean(sessionStorage.getItem(KEY));
    $("key-form").hidden = signedIn;
    $("summary").hidden = $("forget").hidden = !signedIn;
    $("board").hidden = !signedIn || current.name !== "list";
    $("detail").hidden = !signedIn || current.name !== "detail";
    if (!signedIn) return;
    if (current.name === "list") {
      for (const control of filterControls) control.value = filters().get(control.dataset.param) || "";
      loop(async () => { await pollFleet(); await pollEvents(); }, POLL_MS, mine);
      // Every minute, unless news about the page's daemons already brought it in the last half.
      loop(async () => { if (historyAt && Date.now() - historyAt >= HISTORY_EVERY_MS / 2) await pollHistory(); }, HISTORY_EVERY_MS, mine);
      regionChoices();
      loop(pollAround, AROUND_EVERY_MS, mine);
    } else {
      $("detail-title").textContent = current.id;
      for (const a of document.querySelectorAll(".windows a")) {
        a.href = withPoll(`${location.pathname}?window=${a.dataset.window}`);
      }
      loop(pollDetail, POLL_MS, mine);
      loop(pollDetailHistory, HISTORY_EVERY_MS, mine);
      heldShown = "";
      $("held").replaceChildren(); // another daemon's leases must not linger while its own load
      loop(pollHeld, AROUND_EVERY_MS, mine);
    }
  }

  // A new page or new filters: the rows and their history start afresh.
  function clearList() {
    page = null;
    rows.clear();
    recent = new Map();
    historyIds = "";
    historyAt = 0;
    document.querySelector("#daemons tbody").replaceChildren();
  }

  function reset() {
    clearList();
    cursors = [];
    fleetAt = 0; lastEventId = null; caughtUp = false; shownStale = -1;
    aroundShown = "";
    disrupted = null;
    setFailure(null);
    $("events").replaceChildren();
    $("detail-state").replaceChildren();
    $("announce").textContent = "";
  }

  function askForKey(message) {
    sessionStorage.removeItem(KEY);
    reset();
    show();
    $("key-error").textContent = message || "";
    $("key-error").hidden = !message;
    $("api-key").value = "";
    $("api-key").focus();
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    $("api-key").value = "";
    sessionStorage.setItem(KEY, key);
    reset();
    show();
    $("main").focus();
  });
  $("forget").addEventListener("click", () => askForKey());

  // Filters: the URL changes as you type (shareable), and the first page of the new answer shows.
  let typing = 0;
  function applyFilters() {
    const search = new URLSearchParams();
    for (const control of filterControls) if (control.value.trim()) search.set(control.dataset.param, control.value.trim());
    cursors = [];
    clearList();
    navigate(`${home}${search.toString() ? `?${search}` : ""}`, { replace: true });
  }
  $("filters").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(applyFilters, event.target.tagName === "SELECT" ? 0 : 300);
  });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); clearTimeout(typing); applyFilters(); });
  $("filters").addEventListener("reset", () => setTimeout(applyFilters, 0));
  const turnPage = (to) => { cursors = to; clearList(); show(); $("daemons").focus(); };
  $("daemons").tabIndex = -1;
  $("page-first").addEventListener("click", () => turnPage([]));
  $("page-prev").addEventListener("click", () => turnPage(cursors.slice(0, -1)));
  $("page-next").addEventListener("click", () => page?.nextCursor && turnPage([...cursors, page.nextCursor]));

  // Links inside the console change the view without reloading the page (and keep the back button).
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[href]");
    if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const target = new URL(a.href, location.href);
    if (target.origin !== location.origin || !(target.pathname === home || target.pathname.startsWith(`${home}/daemons/`))) return;
    if (a.classList.contains("skip")) return;
    event.preventDefault();
    const leavingList = view().name === "list";
    if (target.pathname === home) { cursors = []; clearList(); }
    navigate(target.pathname + target.search);
    if (view().name === "detail" && leavingList) $("detail-title").focus();
    else if (view().name === "list") $("main").focus();
  });
  window.addEventListener("popstate", () => { cursors = []; clearList(); show(); });
  $("detail-title").tabIndex = -1;

  setInterval(tickClock, 1000);
  if (sessionStorage.getItem(KEY)) show(); else askForKey();
})();
