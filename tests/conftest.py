"""Fixtures: a movable clock, the app on SQLite and on real Postgres, a client.

Every test that takes ``app`` runs twice, once per backend. Postgres comes from
TEST_POSTGRES_URL (default: the local server); when it is unreachable the
Postgres half is skipped locally and fails under CI.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.engine import make_url

from app import create_app
from app.db import Database, build_engine, database
from app.models import Base, daemon_events, daemons
from config import Settings

API_KEY = "test-admin-key-0123456789"
ROTATED_KEY = "test-rotated-key-9876543210"
HEADERS = {"X-API-Key": API_KEY}
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START = datetime(2026, 1, 25, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


class FrozenClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class Ticker:
    """A monotonic clock (seconds) that only moves when a test moves ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def migrate(url: str) -> None:
    """Build a test database the way production does: alembic upgrade head."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def postgres_admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _postgres_or_skip() -> Engine:
    engine = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        engine.dispose()
        message = f"Postgres not reachable at {postgres_admin_url()}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return engine


@contextmanager
def scratch_postgres_database() -> Iterator[str]:
    """A fresh database of our own (dropped afterwards): parallel runs never share tables."""
    admin = _postgres_or_skip()
    name = f"daemon_health_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url()).set(database=name).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with scratch_postgres_database() as url:
        yield url


@pytest.fixture
def pg_engine(postgres_database: str) -> Iterator[Engine]:
    """An engine on the migrated scratch Postgres, with no daemons or events in it."""
    migrate(postgres_database)
    engine = build_engine(postgres_database, timeout=10)
    with engine.begin() as conn:
        conn.execute(delete(daemon_events))
        conn.execute(delete(daemons))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    migrate(url)
    yield url


@pytest.fixture
def backend(database_url: str) -> str:
    return make_url(database_url).get_backend_name()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        admin_api_keys=(API_KEY, ROTATED_KEY),
        admin_rate_limit="100000 per minute",
        ratelimit_key_prefix=f"test-{uuid.uuid4().hex}",
    )


@pytest.fixture
def make_app(settings: Settings, clock: FrozenClock) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test database with settings overridden; clean up after."""
    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app(replace(settings, **overrides), clock=clock)
        built.append(app)
        return app

    yield build
    for app in built:
        _dispose_when_returned(database(app))


def _dispose_when_returned(db: Database, timeout: float = 5.0) -> None:
    """Dispose of the app's pool once every connection is back in it.

    A live-server test's request threads can outlive the server's shutdown;
    a connection they return after dispose() lands in an orphaned pool and
    is only closed by the garbage collector, with a ResourceWarning.
    """
    deadline = time.monotonic() + timeout
    while db.engine.pool.checkedout() and time.monotonic() < deadline:
        time.sleep(0.02)
    db.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app()
    with database(app).engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    return app


@pytest.fixture
def engine(app: Flask) -> Engine:
    return database(app).engine


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def registration(**overrides: Any) -> dict[str, Any]:
    body = {
        "daemonId": "daemon_macmini_1",
        "version": "2.2",
        "capabilities": ["queue", "cron"],
        "pollInterval": 5000,
        "registeredAt": "2026-01-25T12:00:00Z",
    }
    body.update(overrides)
    return body


def heartbeat_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "daemonId": "daemon_macmini_1",
        "status": "healthy",
        "tasksProcessed": 42,
        "currentTask": "evt_123",
        "lastHeartbeat": "2026-01-25T12:05:00Z",
    }
    body.update(overrides)
    return body


@pytest.fixture
def make_daemon(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """Register a daemon through the API; returns the body that was sent."""

    def make(**overrides: Any) -> dict[str, Any]:
        body = registration(**overrides)
        response = client.post("/api/daemon/register", json=body, headers=HEADERS)
        assert response.status_code == 201, response.get_json()
        return body

    return make


@pytest.fixture
def beat(client: FlaskClient):
    """Send a heartbeat through the API; returns the response."""

    def send(daemon_id: str = "daemon_macmini_1", **overrides: Any):
        body = heartbeat_body(daemonId=daemon_id, **overrides)
        return client.post("/api/daemon/heartbeat", json=body, headers=HEADERS)

    return send


@pytest.fixture
def read_health(client: FlaskClient):
    def read() -> dict[str, Any]:
        response = client.get("/api/daemon/health", headers=HEADERS)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return read


@pytest.fixture
def receiver():
    """A real webhook receiver on 127.0.0.1 (tests/support/webhook_receiver.py)."""
    from tests.support.webhook_receiver import start_receiver

    receiver = start_receiver()
    yield receiver
    receiver.stop()
