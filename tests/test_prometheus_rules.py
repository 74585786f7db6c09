"""The README's DaemonDown rule (deploy/prometheus/daemon-health.rules.yml), checked
with `promtool test rules` against series scraped from the service's real /metrics.

The clock moves in scrape-sized steps; at each step the test does what a fleet and
an alerting script do (heartbeats, a /health read every 30 s, which reaps), then
scrapes /metrics. A series missing from a scrape gets a staleness marker, as
Prometheus does, so the rule sees exactly what a real Prometheus would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import HEADERS, heartbeat_body, registration
from tests.support.paths import ROOT

RULES = ROOT / "deploy" / "prometheus" / "daemon-health.rules.yml"
SCRAPE_EVERY = 15  # seconds
UP = "daemon_health_daemon_up"
MAINTENANCE = "daemon_health_daemon_maintenance"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _scrape(client) -> dict[tuple[str, str], float]:
    response = client.get("/metrics", headers=HEADERS)
    assert response.status_code == 200
    return {
        (sample.name, sample.labels["daemon_id"]): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
        if sample.name in (UP, MAINTENANCE)
    }


def _record(client, clock, seconds: int, act: Callable[[int], None]) -> dict[tuple[str, str], list[str]]:
    """Scrape every SCRAPE_EVERY s for ``seconds``; promtool values per (metric, daemon)."""
    scrapes = []
    for t in range(0, seconds + 1, SCRAPE_EVERY):
        if t:
            clock.advance(SCRAPE_EVERY)
        act(t)
        scrapes.append(_scrape(client))
    series: dict[tuple[str, str], list[str]] = {}
    for i, scrape in enumerate(scrapes):
        for daemon_id in scrape.keys() | series.keys():
            values = series.setdefault(daemon_id, ["_"] * i)
            if daemon_id in scrape:
                values.append(f"{scrape[daemon_id]:g}")
            else:  # gone from this scrape: Prometheus writes a staleness marker once
                values.append("stale" if values and values[-1] not in ("_", "stale") else "_")
    return series


def _down_alert(daemon_id: str) -> dict:
    return {
        "exp_labels": {"severity": "page", "daemon_id": daemon_id},
        "exp_annotations": {"summary": f"Daemon {daemon_id} stopped heartbeating"},
    }


def test_daemon_down_keeps_firing_after_health_reaps_it(client, clock, tmp_path):
    promtool = _promtool()
    api = lambda method, path, body=None: client.open(  # noqa: E731
        f"/api/daemon/{path}", method=method, json=body, headers=HEADERS
    )

    def act(t: int) -> None:
        if t == 0:
            api("POST", "register", registration(daemonId="steady"))
            api("POST", "register", registration(daemonId="silent"))  # and never beats
        if t % 30 == 0 and 0 < t < 360:
            api("POST", "heartbeat", heartbeat_body(daemonId="steady"))
        if t % 30 == 0:
            assert api("GET", "health").status_code == 200  # the alerting script; it reaps
        if t == 300:
            api("POST", "register", registration(daemonId="silent"))  # back, and beating again
        if t % 30 == 0 and t > 300:
            api("POST", "heartbeat", heartbeat_body(daemonId="silent"))
        if t == 360:
            assert api("DELETE", "steady").status_code == 200  # taken out of service

    series = _record(client, clock, 480, act)
    # What the service exposed: 0 from expiry on, through the reap at 90 s, until it came back.
    silent = series[(UP, "silent")]
    assert silent[: 75 // SCRAPE_EVERY] == ["1"] * 5 and silent[5:20] == ["0"] * 15
    assert silent[20:] == ["1"] * (len(silent) - 20)
    assert series[(UP, "steady")][360 // SCRAPE_EVERY] == "stale"
    _check_rule(
        promtool,
        tmp_path,
        series,
        [
            at(120),  # 0 since 75 s: pending for its minute
            at(135, "silent"),  # fires after one minute at 0
            at(150, "silent"),  # /health reaped it at 90 s: still firing
            at(285, "silent"),  # and still, however often /health is read
            at(300),  # registered again: resolved
            at(480),  # "steady" deregistered: its series ended, no alert
        ],
    )


def test_daemon_down_stays_quiet_while_a_maintenance_window_covers_it(client, clock, tmp_path):
    promtool = _promtool()

    def act(t: int) -> None:
        if t == 0:
            window = {"from": "2026-01-25T12:00:00Z", "to": "2026-01-25T12:03:00Z",
                      "reason": "deploy", "daemonIds": ["deployed"]}
            assert client.post("/api/maintenance", json=window, headers=HEADERS).status_code == 201
            for daemon_id in ("deployed", "crashed"):  # neither ever beats
                client.post("/api/daemon/register", json=registration(daemonId=daemon_id), headers=HEADERS)
        if t % 30 == 0:
            assert client.get("/api/daemon/health", headers=HEADERS).status_code == 200  # reaps

    series = _record(client, clock, 300, act)
    # Covered from 0 until the window ends at 180 s, also after /health reaped it at 90 s.
    assert series[(MAINTENANCE, "deployed")] == ["1"] * 12 + ["0"] * 9
    assert set(series[(MAINTENANCE, "crashed")]) == {"0"}
    _check_rule(
        promtool,
        tmp_path,
        series,
        [
            at(135, "crashed"),  # both down since 75 s; only the uncovered one pages
            at(225, "crashed"),  # the window ended at 180 s: "deployed" is pending
            at(240, "crashed", "deployed"),  # still down a minute after the window
        ],
    )


def at(seconds: int, *daemon_ids: str) -> dict:
    return {
        "eval_time": f"{seconds}s",
        "alertname": "DaemonDown",
        "exp_alerts": [_down_alert(d) for d in daemon_ids],
    }


def _check_rule(promtool: str, tmp_path, series: dict[tuple[str, str], list[str]], expected: list[dict]) -> None:
    """Run ``promtool test rules`` with the recorded series and the expected alerts."""
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": f"{SCRAPE_EVERY}s",
        "tests": [
            {
                "interval": f"{SCRAPE_EVERY}s",
                "input_series": [
                    {"series": f'{name}{{daemon_id="{daemon_id}"}}', "values": " ".join(values)}
                    for (name, daemon_id), values in sorted(series.items())
                ],
                "alert_rule_test": expected,
            }
        ],
    }
    spec = tmp_path / "daemon-health.rules.test.yml"
    spec.write_text(json.dumps(tests, indent=2))  # JSON is YAML
    result = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
