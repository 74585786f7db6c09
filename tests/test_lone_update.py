"""The heartbeat's driver-level UPDATE on real Postgres: what it keeps of SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pytest
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import DataError, OperationalError

from app.models import daemons
from app.registry import service
from app.registry.schemas import RegistrationIn
from app.store.backend import LoneUpdate
from tests.support.api import registration
from tests.support.clocks import START

BEAT = LoneUpdate(
    update(daemons)
    .where(daemons.c.daemon_id == bindparam("beat_daemon_id"))
    .values(
        last_heartbeat=bindparam("beat_at", type_=daemons.c.last_heartbeat.type),
        tasks_processed=bindparam("new_tasks_processed"),
    )
)


@pytest.fixture
def lone(pg_engine):
    """The engine, with one registered daemon, "lone"."""
    with pg_engine.connect() as conn:
        reg = RegistrationIn.model_validate(registration(daemonId="lone"))
        service.register(conn, reg, now=START, ttl=timedelta(seconds=60))
    return pg_engine


def _row(engine):
    with engine.connect() as conn:
        return conn.execute(select(daemons).where(daemons.c.daemon_id == "lone")).one()


def test_updates_commit_on_their_own_and_go_through_the_column_types(lone):
    later = (START + timedelta(seconds=30)).astimezone(timezone(timedelta(hours=5)))
    with lone.connect() as conn:
        params = {"beat_daemon_id": "lone", "beat_at": later, "new_tasks_processed": 7}
        assert BEAT.rowcount(conn, params) == 1
        assert BEAT.rowcount(conn, {**params, "beat_daemon_id": "nobody"}) == 0
        assert not conn.in_transaction()
    row = _row(lone)  # another connection sees it: committed
    assert row.tasks_processed == 7
    assert row.last_heartbeat == later and row.last_heartbeat.tzinfo == UTC
    with lone.connect() as conn, pytest.raises(ValueError, match="naive datetime"):
        BEAT.rowcount(conn, {**params, "beat_at": later.replace(tzinfo=None)})


def test_a_failed_statement_is_sqlalchemys_error_and_leaves_the_connection_transactional(lone):
    with lone.connect() as conn:
        bad = {"beat_daemon_id": "lone", "beat_at": START, "new_tasks_processed": "many"}
        with pytest.raises(DataError) as raised:
            BEAT.rowcount(conn, bad)
        assert not raised.value.connection_invalidated and not conn.invalidated
        # Back out of autocommit: this update is undone by the rollback.
        conn.execute(text("UPDATE daemons SET tasks_processed = 99"))
        conn.rollback()
    assert _row(lone).tasks_processed == 0


def test_a_lost_connection_is_invalidated_and_the_next_one_works(lone):
    with lone.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.commit()
        with lone.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        params = {"beat_daemon_id": "lone", "beat_at": START, "new_tasks_processed": 3}
        with pytest.raises(OperationalError) as raised:
            BEAT.rowcount(conn, params)
        assert raised.value.connection_invalidated and conn.invalidated
    with lone.connect() as conn:
        assert BEAT.rowcount(conn, params) == 1
    assert _row(lone).tasks_processed == 3
