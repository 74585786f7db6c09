"""Aware UTC in, aware UTC out, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import StatementError

from app.models import daemon_events
from app.registry.wire import isoformat_z


def test_offsets_are_normalised_and_come_back_as_utc(engine):
    moment = datetime(2026, 1, 25, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    with engine.begin() as conn:
        conn.execute(
            insert(daemon_events).values(
                daemon_id="d", kind="registered", occurred_at=moment, recorded_at=moment
            )
        )
        stored = conn.execute(select(daemon_events.c.occurred_at)).scalar_one()
    assert stored == moment
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(engine):
    with pytest.raises(StatementError, match="naive datetime"):
        with engine.begin() as conn:
            conn.execute(
                insert(daemon_events).values(
                    daemon_id="d",
                    kind="registered",
                    occurred_at=datetime(2026, 1, 25, 12, 0),
                    recorded_at=datetime(2026, 1, 25, 12, 0, tzinfo=UTC),
                )
            )


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 25, 12, 0, tzinfo=UTC), "2026-01-25T12:00:00Z"),
        (datetime(2026, 1, 25, 12, 0, 0, 250000, tzinfo=UTC), "2026-01-25T12:00:00.250Z"),
        (datetime(2026, 1, 25, 12, 0, 0, 250001, tzinfo=UTC), "2026-01-25T12:00:00.250001Z"),
        (datetime(2026, 1, 25, 7, 0, tzinfo=timezone(timedelta(hours=-5))), "2026-01-25T12:00:00Z"),
    ],
)
def test_isoformat_z(moment, text):
    assert isoformat_z(moment) == text
