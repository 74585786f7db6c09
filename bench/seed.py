"""The bench database's daemons: inserted with plain SQL, trimmed between /health sizes."""

from __future__ import annotations

import re

import psycopg


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy's form) as psycopg and libpq take it."""
    return re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql://", url)


def insert_daemons(url: str, count: int) -> None:
    """``daemon_00000`` ... healthy, expiring 30 days ahead: nothing goes stale during a run."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO daemons (daemon_id, version, capabilities, poll_interval, registered_at,
                                 session_started_at, last_heartbeat, expires_at,
                                 reported_heartbeat_at, status, tasks_processed, current_task)
            SELECT 'daemon_' || lpad(i::text, 5, '0'), '2.2', '["queue", "email"]'::jsonb, 5000,
                   now(), now(), now(), now() + interval '30 days', now(), 'healthy', 0, NULL
            FROM generate_series(0, %s - 1) AS i
            """,
            (count,),
        )
        conn.execute("VACUUM ANALYZE daemons")


def keep_daemons(url: str, count: int) -> None:
    """Delete all but the first ``count`` daemons (gone, not expired: nobody reports them)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("DELETE FROM daemons WHERE daemon_id >= %s", (f"daemon_{count:05d}",))
        conn.execute("VACUUM ANALYZE daemons")


def count_daemons(url: str) -> int:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM daemons").fetchone()[0]


def vacuum(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE daemons")
