"""Hostile input at volume: whatever arrives, the answer is JSON and never a 5xx."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import HEADERS, heartbeat_body, registration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
# Bodies close to valid ones find more than random noise: change or drop one field.
# The optional fields are in the draw too (region; the task counters).
near_valid = st.one_of(
    st.builds(lambda k, v: {**registration(), k: v}, st.sampled_from([*registration(), "region"]), json_values),
    st.builds(
        lambda k, v: {**heartbeat_body(), k: v},
        st.sampled_from([*heartbeat_body(), "tasksFailed", "taskTimeMs"]),
        json_values,
    ),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _assert_clean(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    if response.status_code >= 400:
        assert isinstance(response.get_json()["error"], str)


@FUZZ
@given(body=st.one_of(json_values, near_valid), path=st.sampled_from(["register", "heartbeat"]))
def test_any_json_body_gets_a_clean_answer(client, body, path):
    _assert_clean(client.post(f"/api/daemon/{path}", json=body, headers=HEADERS))


@FUZZ
@given(raw=st.binary(max_size=300), path=st.sampled_from(["register", "heartbeat"]))
def test_any_bytes_get_a_clean_answer(client, raw, path):
    response = client.post(
        f"/api/daemon/{path}", data=raw, content_type="application/json", headers=HEADERS
    )
    _assert_clean(response)


@FUZZ
@given(
    daemon_id=st.text(min_size=1, max_size=200).filter(lambda s: s not in (".", "..")),
    params=st.dictionaries(st.sampled_from(["window", "from", "to", "after", "limit", "x"]), st.text(max_size=40)),
)
def test_any_id_and_query_get_a_clean_answer(client, daemon_id, params):
    daemon_id = quote(daemon_id, safe="")
    for path in (f"/api/daemon/{daemon_id}", f"/api/daemon/{daemon_id}/uptime", "/api/daemon/uptime", "/api/events"):
        _assert_clean(client.get(path, query_string=params, headers=HEADERS))
    _assert_clean(client.delete(f"/api/daemon/{daemon_id}", headers=HEADERS))


@FUZZ
@given(key=st.text(max_size=100).filter(lambda k: "\n" not in k and "\r" not in k))
def test_any_key_gets_a_clean_answer(client, key):
    try:
        headers = {"X-API-Key": key.encode("latin-1").decode("latin-1")}
    except UnicodeEncodeError:
        return  # not sendable as an HTTP header at all
    _assert_clean(client.get("/api/daemon/health", headers=headers))



LEASE_NAMES = st.text(min_size=1, max_size=200).filter(lambda s: s not in (".", ".."))
QUERY_NAMES = ["window", "from", "to", "step", "region", "daemonId", "ids", "slots", "q", "id", "status",
               "capability", "sort", "limit", "cursor", "order", "after", "x"]


@FUZZ
@given(
    name=LEASE_NAMES,
    body=st.one_of(json_values, st.builds(lambda v: {"daemonId": v}, json_values)),
    params=st.dictionaries(st.sampled_from(["daemonId", "x"]), st.text(max_size=40)),
)
def test_any_lease_request_gets_a_clean_answer(client, make_daemon, name, body, params):
    make_daemon(daemonId="holder")
    name = quote(name, safe="")
    _assert_clean(client.post(f"/api/leases/{name}", json=body, headers=HEADERS))
    _assert_clean(client.post("/api/leases/lease", json=body, headers=HEADERS))
    _assert_clean(client.delete(f"/api/leases/{name}", query_string=params, headers=HEADERS))
    _assert_clean(client.get("/api/leases", query_string=params, headers=HEADERS))


@FUZZ
@given(
    daemon_id=st.text(min_size=1, max_size=200).filter(lambda s: s not in (".", "..")),
    params=st.dictionaries(st.sampled_from(QUERY_NAMES), st.text(max_size=40)),
)
def test_any_query_on_the_read_endpoints_gets_a_clean_answer(client, make_daemon, daemon_id, params):
    make_daemon(daemonId="worker")
    daemon_id = quote(daemon_id, safe="")
    for path in (f"/api/daemon/{daemon_id}/metrics", "/api/daemon/worker/metrics", "/api/daemon/metrics",
                 "/api/daemon/health", "/api/regions", "/api/daemons", "/api/daemons/history"):
        _assert_clean(client.get(path, query_string=params, headers=HEADERS))
