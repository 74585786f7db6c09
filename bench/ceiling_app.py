"""The ceiling: the thinnest Flask app that does a heartbeat's and a /health's database work.

No validation, no rate limiter, no authentication, no metrics, no SQLAlchemy:
``request.get_json()``, a psycopg_pool.ConnectionPool of autocommit connections,
and one statement per request. ``bench/run.py`` serves it with gunicorn beside
the real service so the real one can be compared with what Flask + psycopg
can do at best on the same machine.

    cd bench && ../.venv/bin/gunicorn -w 2 -k sync --bind 127.0.0.1:8001 ceiling_app:app

Environment:
    CEILING_DATABASE_URL  libpq URL of a migrated database (``postgresql+psycopg://``
                          is accepted too); default the local test server
    CEILING_TTL_SECONDS   what a heartbeat adds to now() for expires_at (default 60)
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from psycopg_pool import ConnectionPool

DATABASE_URL = os.environ.get(
    "CEILING_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
).replace("postgresql+psycopg://", "postgresql://", 1)
TTL_SECONDS = int(os.environ.get("CEILING_TTL_SECONDS", "60"))

HEARTBEAT = (
    "UPDATE daemons SET last_heartbeat=now(), "
    f"expires_at=now()+interval '{TTL_SECONDS} seconds', "
    "status=%s, tasks_processed=%s, current_task=%s, reported_heartbeat_at=%s "
    "WHERE daemon_id=%s AND expires_at >= now() RETURNING daemon_id"
)
# ORDER BY so the body lists daemons in the real service's order.
HEALTH = "SELECT * FROM daemons ORDER BY daemon_id"

app = Flask(__name__)
app.json.sort_keys = False

_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    # Built on first use, i.e. in each gunicorn worker after the fork.
    global _pool
    if _pool is None:
        _pool = ConnectionPool(
            DATABASE_URL,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True, "connect_timeout": 3},
            open=True,
        )
    return _pool


def _iso(value):
    return value.isoformat() if value is not None else None


@app.post("/api/daemon/heartbeat")
def heartbeat():
    beat = request.get_json()
    with pool().connection() as conn:
        row = conn.execute(
            HEARTBEAT,
            (
                beat["status"],
                beat["tasksProcessed"],
                beat.get("currentTask"),
                beat["lastHeartbeat"],
                beat["daemonId"],
            ),
        ).fetchone()
    if row is None:
        return jsonify({"error": "Daemon not registered"}), 404
    return jsonify({"success": True})


@app.get("/api/daemon/health")
def health():
    with pool().connection() as conn:
        cur = conn.execute(HEALTH)
        names = [column.name for column in cur.description]
        rows = [dict(zip(names, row)) for row in cur.fetchall()]
    active = [
        {
            "daemonId": r["daemon_id"],
            "version": r["version"],
            "capabilities": r["capabilities"],
            "pollInterval": r["poll_interval"],
            "registeredAt": _iso(r["registered_at"]),
            "lastHeartbeat": _iso(r["last_heartbeat"]),
            "status": r["status"],
            "tasksProcessed": r["tasks_processed"],
            "currentTask": r["current_task"],
            "reportedLastHeartbeat": _iso(r["reported_heartbeat_at"]),
        }
        for r in rows
    ]
    return jsonify({"activeDaemons": active, "stale": [], "totalActive": len(active)})
