"""Scratch Postgres databases of our own, and migrating them the way production does.

The server is TEST_POSTGRES_URL (default: the local one); each scratch database
has a random name and is dropped afterwards, so parallel runs never share tables.
The fixtures: one database for the whole session, migrated once (in-process
tests wipe its tables between tests), and one per module brought up by the
``alembic`` command in a process of its own, as bin/boot does (for the real
gunicorn servers).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tests.support.paths import ROOT, VENV_BIN
from tests.support.processes import service_env
from tests.support.unavailable import Unavailable, skip_or_fail_when_unavailable

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def admin_engine() -> Engine:
    """An autocommit engine on the server (for CREATE/DROP DATABASE); Unavailable if unreachable."""
    engine = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        engine.dispose()
        raise Unavailable(f"Postgres not reachable at {postgres_admin_url()}: {exc}") from exc
    return engine


@contextmanager
def scratch_database(prefix: str = "daemon_health_test") -> Iterator[str]:
    """A fresh, empty database named ``<prefix>_<random>``, dropped afterwards; yields its URL."""
    admin = admin_engine()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_admin_url()).set(database=name).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate(url: str) -> None:
    """Build a database the way production does: alembic upgrade head (in this process)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def migrate_with_alembic(url: str) -> None:
    """``alembic upgrade head`` in a process of its own, as bin/boot does."""
    result = subprocess.run([str(VENV_BIN / "alembic"), "upgrade", "head"], cwd=ROOT,
                            env=service_env(DATABASE_URL=url), capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"alembic upgrade head failed:\n{result.stderr}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The session's scratch database, migrated once."""
    with skip_or_fail_when_unavailable(), scratch_database() as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def migrated_postgres_url() -> Iterator[str]:
    """A scratch database for one module's real servers, brought up by the ``alembic`` command."""
    with skip_or_fail_when_unavailable(), scratch_database("daemon_health_mw") as url:
        migrate_with_alembic(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> Iterator[str]:
    """The URL of a database with no tables yet, on each backend (for migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        with skip_or_fail_when_unavailable(), scratch_database() as url:
            yield url
