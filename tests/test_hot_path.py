"""The heartbeat's path through the service's own code reads no Flask proxy.

Each attribute read through ``g``, ``request`` or ``current_app`` costs about
0.8 us; app/http/context.py hands out the objects themselves instead (README,
Performance). This counts the proxy reads a heartbeat makes from files under
app/, so a new ``request.x`` on the path shows up here, not only in a benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from flask import Flask
from werkzeug import local

from app.http import errors
from tests.support.api import HEADERS, heartbeat_body

APP_DIR = str(Path(__file__).resolve().parent.parent / "app")


@pytest.fixture
def proxy_reads_from_app(monkeypatch) -> list[str]:
    reads: list[str] = []
    original = local._ProxyLookup.__get__

    def counting_get(self, instance, owner=None):
        if instance is not None:
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(APP_DIR):
                reads.append(f"{Path(caller.co_filename).name}:{caller.co_name}")
        return original(self, instance, owner)

    monkeypatch.setattr(local._ProxyLookup, "__get__", counting_get)
    return reads


def test_a_heartbeat_reads_no_flask_proxy_in_the_services_code(client, make_daemon, proxy_reads_from_app):
    make_daemon(daemonId="d-1")
    proxy_reads_from_app.clear()
    response = client.post("/api/daemon/heartbeat", json=heartbeat_body(daemonId="d-1"), headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    assert proxy_reads_from_app == []


def test_the_count_sees_a_proxy_read(proxy_reads_from_app):
    # The instrument itself: a read through request from a file under app/ is counted.
    with Flask(__name__).test_request_context("/nowhere"):
        errors._http_message(type("NotFound", (), {"code": 404})())
    assert proxy_reads_from_app == ["errors.py:_http_message", "errors.py:_http_message"]
