"""The console's tests' shared moves: register and beat through the API, open the page, find a row.

The page counts "last seen" ages on the browser's clock, corrected by the server's Date
header, which is the machine's real time: tests that look at ages set the injected
FrozenClock to ``real_now()`` before daemons register.
"""

from __future__ import annotations

from datetime import UTC, datetime
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


def row(page: Any, daemon_id: str) -> Any:
    header = page.get_by_role("rowheader", name=daemon_id, exact=True)
    return page.locator("#daemons tbody tr").filter(has=header)
