"""The console's tests' shared moves: register and beat through the API, open the page, find a row.

The page counts "last seen" ages on the browser's clock, corrected by the server's Date
header, which is the machine's real time: tests that look at ages set the injected
FrozenClock to ``real_now()`` before daemons register.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.alerts import watcher
from app.alerts.lanes import Lanes
from app.cli import watcher_of
from tests.support.api import API_KEY, HEADERS, heartbeat_body, registration
from tests.support.browser import BrowserPage

STORAGE_KEY = "daemonHealth.apiKey"
POLL_MS = 250  # ?poll=: the page polls every 5 s by default


def real_now() -> datetime:
    return datetime.now(UTC)


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def register(client: FlaskClient, daemon_id: str, **overrides: Any) -> None:
    body = registration(daemonId=daemon_id, **overrides)
    response = client.post("/api/daemon/register", json=body, headers=HEADERS)
    assert response.status_code == 201, response.get_json()


def beat(client: FlaskClient, daemon_id: str, **overrides: Any) -> None:
    body = heartbeat_body(daemonId=daemon_id, **overrides)
    response = client.post("/api/daemon/heartbeat", json=body, headers=HEADERS)
    assert response.status_code == 200, response.get_json()


def watcher_tick(app: Flask) -> list[str]:
    """One pass of the real watcher (no webhooks configured): records stale events, reaps nothing."""
    with Lanes() as lanes:
        return watcher.tick(watcher_of(app), lanes).stale


def acquire(client: FlaskClient, lease: str, daemon_id: str) -> dict[str, Any]:
    response = client.post(f"/api/leases/{lease}", json={"daemonId": daemon_id}, headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def release(client: FlaskClient, lease: str, daemon_id: str) -> None:
    response = client.delete(f"/api/leases/{lease}?daemonId={daemon_id}", headers=HEADERS)
    assert response.status_code == 204, response.get_json()


def regions(client: FlaskClient) -> dict[str | None, dict[str, Any]]:
    answer = client.get("/api/regions", headers=HEADERS).get_json()
    return {entry["region"]: entry for entry in answer}


def a_disrupted_region(app: Flask, client: FlaskClient, clock: Any) -> None:
    """eu-west: w1-w4 fall silent together, w5 (degraded) stays; us-east: u1, u2 (unhealthy);
    solo without a region. The real watcher ticks every 5 s of the moved clock and records
    eu-west's outage, as in production; the clock ends at the machine's real time.
    """
    end = real_now()
    clock.current = end - timedelta(seconds=70)
    for n in range(1, 6):
        register(client, f"w{n}", region="eu-west", capabilities=["queue"])
    register(client, "u1", region="us-east", capabilities=["cron"])
    register(client, "u2", region="us-east", capabilities=["queue"])
    register(client, "solo", region=None)
    statuses = {"w5": "degraded", "u1": "healthy", "u2": "unhealthy", "solo": "healthy"}
    while clock.current < end:
        clock.advance(5)
        for daemon_id, status in statuses.items():
            beat(client, daemon_id, status=status)
        watcher_tick(app)
    assert regions(client)["eu-west"]["disrupted"] is True


def load(tab: BrowserPage, *, key: str | None = API_KEY, path: str = "/dashboard", query: str = "") -> Any:
    page = tab.page
    page.goto(f"{tab.traffic.base_url}{path}?poll={POLL_MS}{'&' + query if query else ''}")
    if key is not None:
        enter_key(page, key)
    return page


def enter_key(page: Any, key: str) -> None:
    # By keyboard, as an operator would: the field has focus when the form shows.
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")


def no_horizontal_scroll(page: Any) -> None:
    """Nothing on the page is wider than the window (a phone scrolls only down)."""
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


def row(page: Any, daemon_id: str) -> Any:
    header = page.get_by_role("rowheader", name=daemon_id, exact=True)
    return page.locator("#daemons tbody tr").filter(has=header)
