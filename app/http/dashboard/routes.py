"""HTTP for the dashboard: its page (list and one daemon), icon and static files; no key, no database."""

from __future__ import annotations

from flask import Blueprint, Response, request, send_from_directory, url_for
from markupsafe import escape

bp = Blueprint("dashboard", __name__, static_folder="static", static_url_path="/dashboard/static")

# Only our own files may load; no inline script or style, no plugins, no framing, no
# form posts (the key form is handled by script, so a key can never land in a URL),
# and no string-to-HTML sinks (Trusted Types): the script builds the page with textContent.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Daemon health</title>
<link rel="icon" id="favicon" href="{favicon}" type="image/svg+xml">
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
</head>
<body data-api="{api}" data-home="{home}" data-favicon="{favicon}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <h1><a class="home" href="{home}">Daemon health</a></h1>
  <nav id="summary" class="summary" aria-label="Fleet counts" hidden>
    <a class="count" id="count-stale-link" data-status="stale" href="{home}?status=stale">
      <strong id="count-stale">0</strong> stale</a>
    <a class="count" data-status="unhealthy" href="{home}?status=unhealthy">
      <strong id="count-unhealthy">0</strong> unhealthy</a>
    <a class="count" data-status="degraded" href="{home}?status=degraded">
      <strong id="count-degraded">0</strong> degraded</a>
    <a class="count" data-status="healthy" href="{home}?status=healthy">
      <strong id="count-healthy">0</strong> healthy</a>
    <span class="active-total">Active <strong id="count-active">0</strong></span>
    <span id="updated" class="muted"></span>
  </nav>
  <button id="forget" type="button" hidden>Forget key</button>
</header>
<div id="banner" class="banner" role="alert" hidden></div>
<main id="main" tabindex="-1">
  <form id="key-form" class="key-form" method="post" hidden>
    <h2>Enter the API key</h2>
    <p id="key-error" class="key-error" role="alert" hidden></p>
    <label for="api-key">API key</label>
    <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck="false"
      required aria-describedby="key-help">
    <p id="key-help" class="help">Kept in this tab only (session storage) and sent as X-API-Key.
      A read key is enough. Started with <code>make run</code>? It printed the admin key, which
      is also in <code>instance/admin-api-key</code>.</p>
    <button type="submit">Show dashboard</button>
  </form>
  <div id="board" hidden>
    <section id="regions-panel" class="regions" aria-labelledby="regions-title" hidden>
      <h2 id="regions-title">Regions</h2>
      <ul id="regions" class="region-list"></ul>
    </section>
    <form id="filters" class="filters" role="search" aria-label="Find daemons">
      <div class="field"><label for="filter-q">Search id</label>
        <input id="filter-q" data-param="q" type="search" autocomplete="off" spellcheck="false"
          maxlength="128" placeholder="e.g. worker-eu"></div>
      <div class="field"><label for="filter-status">Status</label>
        <select id="filter-status" data-param="status">
          <option value="">Any status</option>
          <option value="stale,unhealthy,degraded">Needs attention</option>
          <option value="stale">Stale</option>
          <option value="unhealthy">Unhealthy</option>
          <option value="degraded">Degraded</option>
          <option value="healthy">Healthy</option>
        </select></div>
      <div class="field"><label for="filter-capability">Capability</label>
        <input id="filter-capability" data-param="capability" list="capabilities" autocomplete="off"
          spellcheck="false" maxlength="128" placeholder="exact, e.g. queue">
        <datalist id="capabilities"></datalist></div>
      <div class="field" id="region-field"><label for="filter-region">Region</label>
        <select id="filter-region" data-param="region">
          <option value="">Any region</option>
        </select></div>
      <button id="clear-filters" type="reset">Clear</button>
    </form>
    <div class="table-wrap">
      <table id="daemons" class="cards">
        <caption>Daemons <span id="matching" class="muted"></span> <span id="data-age" class="muted"></span></caption>
        <thead><tr>
          <th scope="col">Status</th><th scope="col">Daemon</th>
          <th scope="col">Last&nbsp;24&nbsp;h</th><th scope="col" class="num">Uptime&nbsp;24&nbsp;h</th>
          <th scope="col">Last seen</th><th scope="col">Region</th><th scope="col" class="opt wide">Version</th>
          <th scope="col" class="opt">Capabilities</th>
          <th scope="col" class="num opt">Tasks processed</th><th scope="col" class="opt wide">Current task</th>
          <th scope="col" class="num">Errors&nbsp;24&nbsp;h</th><th scope="col" class="num">Avg task&nbsp;24&nbsp;h</th>
          <th scope="col">Tasks&nbsp;24&nbsp;h</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
    <nav class="pager" aria-label="Pages">
      <button id="page-first" type="button">First page</button>
      <button id="page-prev" type="button">Previous page</button>
      <span id="page-info" class="muted"></span>
      <button id="page-next" type="button">Next page</button>
    </nav>
    <section id="leases-panel" aria-labelledby="leases-title" hidden>
      <h2 id="leases-title">Leases</h2>
      <table id="leases" class="cards">
        <caption class="visually-hidden">Leases and who holds them</caption>
        <thead><tr>
          <th scope="col">Lease</th><th scope="col">Holder</th><th scope="col" class="num">Token</th>
          <th scope="col">Since</th><th scope="col">Expires</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section class="events" aria-labelledby="events-title">
      <h2 id="events-title">Recent events</h2>
      <ol id="events" class="event-list"></ol>
    </section>
  </div>
  <article id="detail" class="detail" hidden aria-labelledby="detail-title">
    <p><a id="back" href="{home}">&larr; All daemons</a></p>
    <h2 id="detail-title"></h2>
    <p id="detail-missing" class="key-error" hidden></p>
    <dl id="detail-state" class="state"></dl>
    <section aria-labelledby="held-title">
      <h3 id="held-title">Leases held</h3>
      <ul id="held" class="held-list"></ul>
    </section>
    <section aria-labelledby="availability-title">
      <h3 id="availability-title">Availability</h3>
      <nav class="windows" aria-label="Period">
        <a data-window="24h" href="?window=24h">24 h</a>
        <a data-window="7d" href="?window=7d">7 days</a>
        <a data-window="30d" href="?window=30d">30 days</a>
      </nav>
      <p id="detail-uptime" class="big"></p>
      <div id="split" class="split"></div>
      <ul id="split-legend" class="legend"></ul>
      <table id="down-intervals">
        <caption>Down intervals</caption>
        <thead><tr><th scope="col">From</th><th scope="col">To</th>
          <th scope="col" class="num">Duration</th><th scope="col">Reason</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section aria-labelledby="tasks-title">
      <h3 id="tasks-title">Tasks, last 24 h</h3>
      <p id="detail-tasks"></p>
      <div class="charts">
        <figure><figcaption>Tasks per hour</figcaption><div id="chart-tasks" class="chart"></div></figure>
        <figure><figcaption>Error rate</figcaption><div id="chart-errors" class="chart"></div></figure>
        <figure><figcaption>Average task time</figcaption><div id="chart-time" class="chart"></div></figure>
      </div>
    </section>
  </article>
  <div id="announce" class="visually-hidden" aria-live="polite"></div>
  <noscript><p>This dashboard needs JavaScript.</p></noscript>
</main>
</body>
</html>
"""

# The tab's icon: a dot, green with nothing stale, red with the stale count in it.
FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">\
<circle cx="16" cy="16" r="15" fill="{fill}"/>\
<text x="16" y="16" dy=".35em" text-anchor="middle" font-family="sans-serif" font-weight="bold" \
font-size="{size}" fill="#fff">{text}</text></svg>"""


def _page() -> Response:
    home = url_for("dashboard.dashboard")
    html = PAGE.format(
        css=escape(url_for("dashboard.static", filename="dashboard.css")),
        js=escape(url_for("dashboard.static", filename="dashboard.js")),
        favicon=escape(url_for("dashboard.favicon")),
        home=escape(home),
        api=escape(f"{request.script_root}/api"),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/dashboard")
def dashboard() -> Response:
    return _page()


@bp.get("/dashboard/daemons/<daemon_id:daemon_id>")
def daemon_page(daemon_id: str) -> Response:
    """One daemon's page: the same document; the script reads the id from the path."""
    return _page()


@bp.get("/dashboard/favicon.svg")
def favicon() -> Response:
    """``?stale=N`` draws N (99+ above 99); without it, or with 0, the all-well icon."""
    raw = request.args.get("stale", "0")
    stale = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0
    text = "" if stale == 0 else ("99+" if stale > 99 else str(stale))
    svg = FAVICON.format(
        fill="#b3261e" if stale else "#17692f", text=text, size=18 if len(text) < 3 else 12
    )
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/favicon.ico")
def favicon_ico() -> Response:
    """Browsers and tools ask for /favicon.ico on their own: the all-well icon, as a real ICO."""
    return send_from_directory(bp.static_folder, "favicon.ico", mimetype="image/vnd.microsoft.icon")


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
