"""The OpenAPI document describes the service exactly: schemathesis finds no 5xx and no
response that breaks the document, on SQLite and on Postgres."""

from __future__ import annotations

import re
import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from werkzeug.serving import make_server

from app.http.auth import ACCESS
from app.http.openapi.document import document
from tests.support.api import HEADERS

schema = schemathesis.openapi.from_dict(document())
# Schema-valid requests only: schemathesis's negative mode counts any query
# parameter it did not expect, and the key header added to every call, as
# invalid data that should be refused. Hostile input has its own fuzz test.
schema.config.generation.update(modes=[GenerationMode.POSITIVE])


@pytest.fixture
def server_url(app, make_app, make_daemon):
    """The real service over real HTTP on 127.0.0.1, rate limit out of the way."""
    make_daemon(daemonId="a")  # a known daemon, so generated ids sometimes hit one
    fuzzed = make_app(admin_rate_limit="1000000 per minute")
    server = make_server("127.0.0.1", 0, fuzzed, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_service_matches_its_openapi_document(case, server_url):
    # Every other check stays on. This one expects any schema-valid body to be
    # accepted, but a pattern cannot say that 2026-02-30 is no date: the service
    # rightly answers 400 there, and that answer is itself in the document.
    case.call_and_validate(
        base_url=server_url,
        headers=HEADERS,
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


def test_document_is_served_without_a_key(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) >= {
        "/api/daemon/register",
        "/api/daemon/heartbeat",
        "/api/daemon/health",
        "/api/daemon/{daemonId}",
        "/api/daemon/uptime",
        "/api/daemon/{daemonId}/uptime",
        "/api/daemons",
        "/api/events",
        "/api/leases",
        "/api/leases/{name}",
    }
    fleet_parameters = {p["name"] for p in document["paths"]["/api/daemons"]["get"]["parameters"]}
    assert fleet_parameters >= {"q", "id", "status", "capability", "region", "sort", "limit", "cursor"}
    register = document["components"]["schemas"]["RegistrationIn"]
    assert register["required"] == ["daemonId", "version", "capabilities", "pollInterval", "registeredAt"]


def test_every_keyed_operation_documents_its_403(app):
    # Every keyed endpoint refuses some kind of key (a metrics key everywhere but
    # /metrics), and the daemon's own endpoints refuse another daemon key too.
    paths = document()["paths"]
    checked = []
    for rule in app.url_map.iter_rules():
        path = (re.sub(r"<daemon_id:daemon_id>", "{daemonId}", rule.rule)
                .replace("<any_text:name>", "{name}").replace("<int:window_id>", "{windowId}"))
        if rule.endpoint not in ACCESS or path not in paths:
            continue  # /metrics answers Prometheus text and is not in the document
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            responses = paths[path][method.lower()]["responses"]
            assert "403" in responses, f"{method} {path}"
            checked.append(f"{method} {path}")
    assert len(checked) == len(ACCESS) - 1  # all but /metrics
