"""GET /dashboard: a live page for operators, plain JavaScript and CSS served from ``static/``.

The page itself needs no key; it asks for one and sends it as X-API-Key on its
calls to the read-only views (/api/daemons, /api/events, /api/daemon/uptime).
It never calls /api/daemon/health, whose stale report is once-only.
"""
