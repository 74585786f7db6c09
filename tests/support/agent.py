"""The real app on a real 127.0.0.1 port, for testing the daemon agent (agent/) over HTTP.

The agent lives in its own package beside the service; putting ``agent/`` on
sys.path here makes it importable without installing anything, so ``make test``
needs nothing extra. The server records every request the agent makes (time,
path, status, Retry-After), so tests can check *when* the agent called, not
just what it left behind.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete
from werkzeug.serving import WSGIRequestHandler, make_server

from app.db import database
from app.models import Base
from tests.conftest import HEADERS, ROOT

AGENT_DIR = ROOT / "agent"
if str(AGENT_DIR) not in sys.path:
    sys.path.insert(0, str(AGENT_DIR))

# Reads by the tests come from another address, so they never spend the agent's rate limit.
READER_ADDRESS = "192.0.2.10"


@dataclass
class Call:
    at: float  # time.monotonic() when the answer left the server
    method: str
    path: str
    status: int
    retry_after: str | None


@dataclass
class Recorder:
    """WSGI middleware: remembers every request that came over the socket."""

    app: Any
    calls: list[Call] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def recording_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            retry_after = next((v for k, v in headers if k.lower() == "retry-after"), None)
            self.calls.append(
                Call(time.monotonic(), environ["REQUEST_METHOD"], environ["PATH_INFO"],
                     int(status.split()[0]), retry_after)
            )
            return start_response(status, headers, *rest)

        return self.app(environ, recording_start)

    def of(self, path_suffix: str) -> list[Call]:
        return [c for c in list(self.calls) if c.path.endswith(path_suffix)]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def serving(app: Flask, port: int = 0) -> Iterator[tuple[str, Recorder]]:
    """Serve ``app`` on 127.0.0.1 (a free port unless given) until the block ends."""
    recorder = Recorder(app)
    server = make_server("127.0.0.1", port, recorder, threaded=True, request_handler=_QuietHandler)
    # Polling for shutdown every 50 ms (not 500) keeps each test's teardown short.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="agent-test", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", recorder
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wipe(app: Flask) -> Flask:
    with database(app).engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    return app


def new_daemon_id() -> str:
    return f"daemon_agent_{uuid.uuid4().hex[:8]}"


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Reader:
    """The tests' view of the service, through the app in-process (not the agent's socket)."""

    def __init__(self, app: Flask) -> None:
        self.client: FlaskClient = app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = READER_ADDRESS

    def daemon(self, daemon_id: str) -> dict[str, Any] | None:
        response = self.client.get(f"/api/daemon/{daemon_id}", headers=HEADERS)
        assert response.status_code in (200, 404), response.get_json()
        return response.get_json() if response.status_code == 200 else None

    def fleet_ids(self) -> list[str]:
        response = self.client.get("/api/daemons", headers=HEADERS)
        assert response.status_code == 200, response.get_json()
        return [d["daemonId"] for d in response.get_json()["daemons"]]

    def event_kinds(self, daemon_id: str) -> list[str]:
        kinds: list[str] = []
        after = 0
        while True:
            response = self.client.get(f"/api/events?after={after}&limit=500", headers=HEADERS)
            assert response.status_code == 200, response.get_json()
            body = response.get_json()
            if not body["events"]:
                return kinds
            kinds += [e["kind"] for e in body["events"] if e["daemonId"] == daemon_id]
            after = body["lastId"]

    def delete(self, daemon_id: str) -> None:
        response = self.client.delete(f"/api/daemon/{daemon_id}", headers=HEADERS)
        assert response.status_code == 200, response.get_json()
