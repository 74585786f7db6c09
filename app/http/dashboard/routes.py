"""HTTP for the dashboard page and its static files; no key, no rate limit, no database."""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for
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
<title>Daemon health</title>
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
</head>
<body data-api="{api}">
<header class="top">
  <h1>Daemon health</h1>
  <p id="summary" class="summary" hidden>
    <span>Active <strong id="count-active">0</strong></span>
    <span>Stale <strong id="count-stale">0</strong></span>
    <span id="updated"></span>
  </p>
  <button id="forget" type="button" hidden>Forget key</button>
</header>
<div id="banner" class="banner" role="alert" hidden></div>
<main>
  <form id="key-form" class="key-form" method="post" hidden>
    <h2>Enter the API key</h2>
    <p id="key-error" class="key-error" role="alert" hidden></p>
    <label for="api-key">API key</label>
    <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck="false"
      required aria-describedby="key-help">
    <p id="key-help" class="help">Kept in this tab only (session storage) and sent as X-API-Key.</p>
    <button type="submit">Show dashboard</button>
  </form>
  <div id="board" tabindex="-1" hidden>
    <table id="daemons">
      <caption>Daemons <span id="data-age" class="muted"></span></caption>
      <thead><tr>
        <th scope="col">Status</th><th scope="col">Daemon</th><th scope="col">Last seen</th>
        <th scope="col">Version</th><th scope="col">Capabilities</th>
        <th scope="col" class="num">Tasks processed</th><th scope="col">Current task</th>
        <th scope="col" class="num">Uptime 24 h</th>
        <th scope="col" class="num">Errors 24 h</th><th scope="col" class="num">Avg task 24 h</th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <section class="events" aria-labelledby="events-title">
      <h2 id="events-title">Recent events</h2>
      <ol id="events" class="event-list"></ol>
    </section>
    <div id="announce" class="visually-hidden" aria-live="polite"></div>
  </div>
  <noscript><p>This dashboard needs JavaScript.</p></noscript>
</main>
</body>
</html>
"""


@bp.get("/dashboard")
def dashboard() -> Response:
    html = PAGE.format(
        css=escape(url_for("dashboard.static", filename="dashboard.css")),
        js=escape(url_for("dashboard.static", filename="dashboard.js")),
        api=escape(f"{request.script_root}/api"),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
