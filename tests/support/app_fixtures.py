"""Fixtures for the app in-process: a movable clock, the app on SQLite and on real Postgres.

Every test that takes ``app`` runs twice, once per backend. Each backend's
database is migrated once per session; the tables are wiped before each test.
Postgres comes from TEST_POSTGRES_URL (default: the local server); when it is
unreachable the Postgres half is skipped locally and fails under CI.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete
from sqlalchemy.engine import make_url

from app import create_app
from app.alerts.lanes import Lanes
from app.http.context import database
from app.models import Base
from app.store.engine import Database, build_engine
from config import Settings
from tests.support.api import API_KEY, HEADERS, ROTATED_KEY, heartbeat_body, registration
from tests.support.clocks import FrozenClock
from tests.support.postgres import migrate
from tests.support.smtp_receiver import start_smtp_receiver
from tests.support.webhook_receiver import start_receiver


def wipe_tables(engine: Engine) -> None:
    """Delete every row of every table the models know (children first)."""
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def pg_engine(postgres_database: str) -> Iterator[Engine]:
    """An engine on the session's migrated scratch Postgres, with every table empty."""
    engine = build_engine(postgres_database, timeout=10)
    wipe_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory) -> str:
    """A migrated database on each backend, once per session."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_database")
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    migrate(url)
    return url


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
    wipe_tables(database(app).engine)
    return app


@pytest.fixture
def engine(app: Flask) -> Engine:
    return database(app).engine


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


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
    receiver = start_receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp():
    """A real SMTP server on 127.0.0.1 that wants a login (tests/support/smtp_receiver.py)."""
    receiver = start_smtp_receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def senders() -> Iterator[Lanes]:
    """The watcher's delivery lanes, closed after the test."""
    with Lanes() as lanes:
        yield lanes
