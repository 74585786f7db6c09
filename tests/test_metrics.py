"""/metrics: Prometheus text that prometheus_client's own parser reads back."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import API_KEY, HEADERS

METRICS_KEY = "metrics-key-0123456789abc"


def _scrape(client, headers=HEADERS) -> dict:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_fleet_gauges(clock, client, make_daemon, beat):
    make_daemon(daemonId="busy")
    make_daemon(daemonId="quiet")
    clock.advance(30)
    beat("busy", status="degraded", tasksProcessed=42)
    clock.advance(31)  # quiet has expired; nobody has read /health
    samples = _scrape(client)
    assert samples[("daemon_health_daemon_up", (("daemon_id", "busy"),))] == 1
    assert samples[("daemon_health_daemon_up", (("daemon_id", "quiet"),))] == 0
    assert samples[("daemon_health_daemon_status", (("daemon_id", "busy"), ("status", "degraded")))] == 1
    assert samples[("daemon_health_daemon_status", (("daemon_id", "busy"), ("status", "healthy")))] == 0
    assert samples[("daemon_health_daemon_tasks_processed_total", (("daemon_id", "busy"),))] == 42
    last_seen = samples[("daemon_health_daemon_last_heartbeat_timestamp_seconds", (("daemon_id", "busy"),))]
    assert last_seen == clock.now().timestamp() - 31
    assert samples[("daemon_health_daemons", (("state", "active"),))] == 1
    assert samples[("daemon_health_daemons", (("state", "stale"),))] == 1
    assert samples[("daemon_health_alert_deliveries", (("state", "pending"),))] == 0
    assert samples[("daemon_health_alert_deliveries", (("state", "suppressed"),))] == 0


def test_scraping_does_not_take_the_stale_report(clock, client, make_daemon, read_health):
    make_daemon()
    clock.advance(61)
    _scrape(client)
    assert [d["daemonId"] for d in read_health()["stale"]] == ["daemon_macmini_1"]


def test_request_metrics_are_labelled_by_route(client, make_daemon):
    before = _scrape(client)
    make_daemon(daemonId="one")
    client.get("/api/daemon/one", headers=HEADERS)
    client.get("/api/daemon/nobody", headers=HEADERS)
    after = _scrape(client)
    route = "/api/daemon/<daemon_id:daemon_id>"

    def delta(labels):
        key = ("daemon_health_http_requests_total", tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta({"endpoint": route, "method": "GET", "status": "200"}) == 1
    assert delta({"endpoint": route, "method": "GET", "status": "404"}) == 1
    assert delta({"endpoint": "/api/daemon/register", "method": "POST", "status": "201"}) == 1
    assert not any("one" in dict(labels).get("endpoint", "") for _, labels in after)
    count_key = ("daemon_health_http_request_duration_seconds_count", (("endpoint", route), ("method", "GET")))
    assert after[count_key] - before.get(count_key, 0) == 2


def test_invented_methods_share_one_label(client):
    before = _scrape(client)
    for method in ("BREW", "WHEN", "PROPFIND"):
        assert client.open("/api/daemon/health", method=method, headers=HEADERS).status_code == 405
    after = _scrape(client)
    key = ("daemon_health_http_requests_total",
           (("endpoint", "unmatched"), ("method", "other"), ("status", "405")))
    assert after[key] - before.get(key, 0) == 3
    assert not any(dict(labels).get("method") in {"BREW", "WHEN", "PROPFIND"} for _, labels in after)


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong-key-wrong-key"}, {"Authorization": "Bearer wrong-key-wrong"}],
)
def test_metrics_need_a_key(client, headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_a_metrics_key_reads_metrics_only_and_the_admin_key_still_works(app, make_app):
    client = make_app(metrics_api_keys=(METRICS_KEY,)).test_client()
    assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": METRICS_KEY}).status_code == 200
    # The admin key opens every endpoint, /metrics included (it used to be refused here).
    assert client.get("/metrics", headers={"X-API-Key": API_KEY}).status_code == 200
    refused = client.get("/api/daemons", headers={"X-API-Key": METRICS_KEY})
    assert refused.status_code == 403
    assert "a metrics key may only read GET /metrics" in refused.get_json()["error"]
