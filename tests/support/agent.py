"""The real app on a real 127.0.0.1 port, for testing the daemon agent (agent/) over HTTP.

The agent lives in its own package beside the service; putting ``agent/`` on
sys.path here makes it importable without installing anything, so ``make test``
needs nothing extra. The server records every request the agent makes (time,
path, status, Retry-After, the JSON it sent), so tests can check *when* and
*what* the agent sent, not just what it left behind.
"""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.http.context import database
from tests.support import live_server
from tests.support.api import HEADERS
from tests.support.app_fixtures import wipe_tables
from tests.support.paths import ROOT

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
    body: Any = None  # the request's JSON, if it had one


@dataclass
class Recorder:
    """WSGI middleware: remembers every request that came over the socket."""

    app: Any
    calls: list[Call] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # Read the body, then hand the app an unread copy of it.
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)
        body = json.loads(raw) if raw else None

        def recording_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            retry_after = next((v for k, v in headers if k.lower() == "retry-after"), None)
            self.calls.append(
                Call(time.monotonic(), environ["REQUEST_METHOD"], environ["PATH_INFO"],
                     int(status.split()[0]), retry_after, body)
            )
            return start_response(status, headers, *rest)

        return self.app(environ, recording_start)

    def of(self, path_suffix: str) -> list[Call]:
        return [c for c in list(self.calls) if c.path.endswith(path_suffix)]


@contextmanager
def serving(app: Flask, port: int = 0) -> Iterator[tuple[str, Recorder]]:
    """Serve ``app`` on 127.0.0.1 (a free port unless given), recording every request."""
    recorder = Recorder(app)
    with live_server.serving(recorder, port) as url:
        yield url, recorder


def wipe(app: Flask) -> Flask:
    wipe_tables(database(app).engine)
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
