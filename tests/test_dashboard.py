"""The live dashboard in a real headless Chromium, against the real app over real HTTP.

The page counts "last seen" ages on the browser's clock, corrected by the server's Date
header, and the Date header is the machine's real time. So these tests set the injected
FrozenClock to the real time before daemons register: ages are then honest. Staleness is
asserted on the server's own ``stale`` marker, after moving the FrozenClock past the TTL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.api import API_KEY, HEADERS
from tests.support.browser import ARTIFACTS, BrowserPage, contrast_ratio, parse_rgb
from tests.support.clocks import FrozenClock
from tests.support.console import (
    POLL_MS,
    STORAGE_KEY,
    beat,
    enter_key,
    expect,
    load,
    real_now,
    register,
    row,
    watcher_tick,
)

# Cells after the row header: status, [daemon id], 24 h strip, uptime, last seen, region,
# version, capabilities, tasks, current task, error rate, average task time, tasks chart.
(STATUS, STRIP, UPTIME, LAST_SEEN, REGION, VERSION, CAPABILITIES, TASKS, CURRENT_TASK, ERRORS,
 AVG_TASK, SPARK) = range(12)


def cell(page: Any, daemon_id: str, column: int) -> Any:
    return row(page, daemon_id).locator("td").nth(column)


def seconds_ago(text: str) -> int:
    match = re.fullmatch(r"(\d+) s ago", text)
    assert match, f"not a seconds age: {text!r}"
    return int(match.group(1))


def test_page_needs_no_key_and_sends_a_strict_csp(client: FlaskClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["form-action"] == "'none'"  # a key typed in can never become a URL
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "script-src" not in csp
    html = page.get_data(as_text=True)
    assert re.findall(r"<script\b(?![^>]*\bsrc=)", html) == []  # no inline script
    assert re.findall(r"\s(style|on\w+)=", html) == []  # no inline style or handlers
    assert "http://" not in html and "https://" not in html  # no CDN, no outside fonts
    for asset, mimetype in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        served = client.get(f"/dashboard/static/{asset}")
        assert served.status_code == 200
        assert served.mimetype == mimetype
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        served.close()
    # The data it shows still needs the key.
    assert client.get("/api/daemons").status_code == 401


def test_page_asks_for_the_key_before_any_data_call(open_page: Callable[..., BrowserPage]) -> None:
    tab = open_page()
    page = load(tab, key=None)
    expect(page.get_by_role("heading", name="Enter the API key")).to_be_visible()
    expect(page.get_by_label("API key")).to_be_focused()
    expect(page.get_by_label("API key")).to_have_attribute("type", "password")
    expect(page.locator("#daemons")).to_be_hidden()
    page.wait_for_timeout(3 * POLL_MS)
    assert tab.traffic.api_calls() == []


def test_registered_daemons_appear_with_status_version_tasks_and_uptime(
    app: Flask, client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    start = real_now()
    clock.current = start - timedelta(seconds=120)
    register(client, "delta")  # never beats again: expired a minute ago
    clock.current = start - timedelta(seconds=30)
    register(client, "alpha", capabilities=["queue", "cron"])
    register(client, "bravo", version="3.0.1", capabilities=[], region="eu-west")
    register(client, "charlie")
    clock.current = start
    beat(client, "alpha", status="healthy", tasksProcessed=42, currentTask="evt_123", tasksFailed=3, taskTimeMs=5250)
    beat(client, "bravo", status="degraded", tasksProcessed=7, currentTask=None)
    beat(client, "charlie", status="unhealthy", tasksProcessed=1234567)
    assert watcher_tick(app) == ["delta"]

    tab = open_page()
    page = load(tab)

    expect(cell(page, "alpha", STATUS)).to_have_text("healthy")
    expect(cell(page, "alpha", VERSION)).to_have_text("2.2")
    expect(cell(page, "alpha", CAPABILITIES)).to_have_text("queue, cron")
    expect(cell(page, "alpha", TASKS)).to_have_text("42")
    expect(cell(page, "alpha", CURRENT_TASK)).to_have_text("evt_123")
    expect(cell(page, "bravo", STATUS)).to_have_text("degraded")
    expect(cell(page, "bravo", VERSION)).to_have_text("3.0.1")
    expect(cell(page, "bravo", REGION)).to_have_text("eu-west")
    expect(cell(page, "alpha", REGION)).to_have_text("—none")
    expect(cell(page, "bravo", CURRENT_TASK)).to_have_text("—none")  # a dash, read as "none"
    expect(cell(page, "charlie", STATUS)).to_have_text("unhealthy")
    expect(cell(page, "charlie", TASKS)).to_have_text("1,234,567")
    expect(cell(page, "delta", STATUS)).to_have_text("stale was healthy")
    expect(page.locator("#count-active")).to_have_text("3")
    expect(page.locator("#count-stale")).to_have_text("1")
    # 24 h uptime: delta was up for its TTL (60 s) and has been down for 60 s since.
    expect(cell(page, "alpha", UPTIME)).to_have_text("100 %")
    expect(cell(page, "delta", UPTIME)).to_have_text("50.00 %1 incident")  # the incidents on a line of their own
    # 24 h task metrics: alpha failed 3 of 42 tasks at 125 ms each; charlie reports no time or failures.
    expect(cell(page, "alpha", ERRORS)).to_have_text("7.14 % of 42")
    expect(cell(page, "alpha", AVG_TASK)).to_have_text("125 ms")
    expect(cell(page, "charlie", ERRORS)).to_have_text("0.00 % of 1,234,567")
    expect(cell(page, "charlie", AVG_TASK)).to_have_text("—none")
    # Events read at start: newest first, the stale one marked as such.
    expect(page.locator("#events li").first).to_contain_text("stale")
    expect(page.locator("#events li.kind-stale")).to_contain_text("delta")
    expect(page.locator("#events li")).to_have_count(7)  # 4 registered, 2 status changes, 1 stale

    # Last seen counts up, every second, from the server's receipt time.
    age = cell(page, "alpha", LAST_SEEN)
    first = seconds_ago(age.inner_text())
    assert first < 30
    page.wait_for_function(
        """n => parseInt(document.querySelector("#daemons tbody tr.is-healthy td.age").textContent, 10) >= n""",
        arg=first + 2,
    )  # alpha is the one healthy row
    expect(cell(page, "delta", LAST_SEEN)).to_have_text(re.compile(r"^2 min \d+ s ago$"))

    # Rows are updated in place (a screen reader's position or a selection survives a poll).
    alpha_row = row(page, "alpha").element_handle()
    beat(client, "alpha", tasksProcessed=43)
    expect(cell(page, "alpha", TASKS)).to_have_text("43")
    assert alpha_row.evaluate("tr => tr.isConnected")

    # The key: in this tab's sessionStorage, on every data call as X-API-Key, never in a URL.
    assert page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") == API_KEY
    assert page.evaluate("localStorage.length") == 0
    calls = tab.traffic.api_calls()
    assert calls and all(c.headers.get("x-api-key") == API_KEY for c in calls)
    assert all(API_KEY not in r.url for r in tab.traffic.requests)
    assert API_KEY not in page.url
    paths = {c.url.split("?")[0].removeprefix(tab.traffic.base_url) for c in calls}
    assert paths == {  # never /health
        "/api/daemons", "/api/events", "/api/daemons/history", "/api/regions", "/api/leases"
    }

    # Accessible: a captioned table with scoped headers, a polite live region, readable colours.
    expect(page.locator("#daemons caption")).to_contain_text("Daemons")
    assert page.locator("#daemons thead th").evaluate_all(
        "cells => cells.every(c => c.scope === 'col')"
    )
    expect(page.locator("[aria-live=polite]")).to_have_count(1)
    for daemon_id in ("alpha", "bravo", "charlie", "delta"):
        badge = row(page, daemon_id).locator(".badge")
        colour, background = badge.evaluate(
            "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
        )
        assert contrast_ratio(parse_rgb(colour), parse_rgb(background)) >= 4.5, daemon_id

    # A reload keeps the key (same tab); "Forget key" drops it and the data, by keyboard.
    page.reload()
    expect(cell(page, "alpha", STATUS)).to_have_text("healthy")
    page.get_by_role("button", name="Forget key").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("API key")).to_be_focused()
    expect(page.locator("#daemons")).to_be_hidden()
    assert page.locator("#daemons tbody tr").count() == 0
    assert page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") is None


def test_a_daemon_going_stale_shows_stale_and_its_event_arrives(
    app: Flask, client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    start = real_now()
    clock.current = start - timedelta(seconds=50)
    register(client, "alpha")
    register(client, "bravo", version="2.3", capabilities=["queue"])
    register(client, "charlie", capabilities=["cron"])
    register(client, "delta", version="2.1", capabilities=["queue", "cron", "export"])
    clock.current = start
    beat(client, "bravo", tasksProcessed=981, currentTask="evt_981")
    beat(client, "charlie", status="degraded", tasksProcessed=17, currentTask="evt_17")
    beat(client, "delta", status="unhealthy", tasksProcessed=3, currentTask=None)

    tab = open_page()
    page = load(tab)
    expect(cell(page, "alpha", STATUS)).to_have_text("healthy")
    expect(page.locator("#count-stale")).to_have_text("0")

    # alpha's TTL (60 s from its registration) runs out on the server's clock.
    clock.advance(15)
    expect(cell(page, "alpha", STATUS)).to_have_text("stale was healthy")
    expect(row(page, "alpha")).to_have_class("stale")
    expect(page.locator("#count-stale")).to_have_text("1")
    expect(page.locator("#count-active")).to_have_text("3")

    # Someone must record the stale event: in production the watcher
    # (`flask daemons watch`) does, within a tick. Its tick leaves the row in place,
    # so the once-only stale report of GET /api/daemon/health stays whole.
    assert watcher_tick(app) == ["alpha"]
    newest = page.locator("#events li").first
    expect(newest).to_have_class(re.compile(r"\bkind-stale\b"))
    expect(newest).to_contain_text("alpha")
    expect(newest.locator(".new")).to_have_text("new")
    expect(page.locator("#announce")).to_have_text(re.compile(r"^Daemon alpha went stale at "))
    expect(cell(page, "alpha", UPTIME)).to_contain_text("1 incident")  # news refreshes uptime

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # The dashboard consumed nothing: /health still reports alpha as stale, once; after
    # that reap (and a deregistration) the daemons leave the table.
    health = client.get("/api/daemon/health", headers=HEADERS).get_json()
    assert [d["daemonId"] for d in health["stale"]] == ["alpha"]
    assert client.delete("/api/daemon/delta", headers=HEADERS).status_code == 200
    expect(row(page, "alpha")).to_have_count(0)
    expect(row(page, "delta")).to_have_count(0)
    expect(page.locator("#daemons tbody th")).to_have_text(["charlie", "bravo"])  # degraded first
    expect(page.locator("#count-stale")).to_have_text("0")
    expect(page.locator("#events li").first).to_contain_text("deregistered delta")
    assert not any("/api/daemon/health" in r.url for r in tab.traffic.requests)


def test_a_wrong_or_revoked_key_asks_for_the_key_again(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    register(client, "alpha")
    tab = open_page()
    page = load(tab, key="not-the-key-0123456789")
    expect(page.get_by_role("alert")).to_have_text("That key was not accepted. Enter it again.")
    expect(page.get_by_label("API key")).to_be_focused()
    expect(page.get_by_label("API key")).to_have_value("")
    assert page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") is None
    expect(page.locator("#daemons")).to_be_hidden()

    enter_key(page, API_KEY)
    expect(cell(page, "alpha", STATUS)).to_have_text("healthy")
    expect(page.locator("#key-error")).to_be_hidden()

    # The key stops working mid-session (rotated out): the next 401 asks again.
    page.evaluate(f"sessionStorage.setItem('{STORAGE_KEY}', 'revoked-key-0123456789')")
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.locator("#daemons")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") is None


def test_unreachable_api_shows_a_banner_and_keeps_the_last_data(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    register(client, "alpha")
    tab = open_page()
    page = load(tab)
    expect(cell(page, "alpha", STATUS)).to_have_text("healthy")
    banner = page.locator("#banner")
    expect(banner).to_be_hidden()

    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("The API is unreachable")
    expect(banner).to_contain_text("Showing the last data, from")
    expect(page.locator("main")).to_have_class("old")
    expect(page.locator("#daemons caption")).to_contain_text("not current")
    expect(cell(page, "alpha", STATUS)).to_have_text("healthy")  # kept

    page.unroute("**/api/**")
    expect(banner).to_be_hidden()
    expect(page.locator("main")).not_to_have_class("old")
    expect(page.locator("#daemons caption")).not_to_contain_text("not current")


# Moves the page's clock an hour ahead of the machine's (Date and Date.now only).
SKEWED_BROWSER_CLOCK = """
(() => {
  const RealDate = Date, skew = 3600 * 1000;
  class SkewedDate extends RealDate {
    constructor(...args) { if (args.length) super(...args); else super(RealDate.now() + skew); }
    static now() { return RealDate.now() + skew; }
  }
  globalThis.Date = SkewedDate;
})();
"""


def test_last_seen_is_not_fooled_by_a_skewed_browser_clock(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    register(client, "alpha")
    tab = open_page(init_script=SKEWED_BROWSER_CLOCK)
    page = load(tab)
    skew_ms = page.evaluate("Date.now()") - real_now().timestamp() * 1000
    assert 3590_000 < skew_ms < 3610_000  # the browser really is an hour fast
    expect(cell(page, "alpha", STATUS)).to_have_text("healthy")
    # Uncorrected, this would read "1 h 0 min ago".
    expect(cell(page, "alpha", LAST_SEEN)).to_have_text(re.compile(r"^\d+ s ago$"))
    assert seconds_ago(cell(page, "alpha", LAST_SEEN).inner_text()) < 30


def test_the_service_has_an_icon_and_the_tab_icon_draws_the_stale_count(client: FlaskClient) -> None:
    ico = client.get("/favicon.ico")
    assert ico.status_code == 200 and ico.mimetype == "image/vnd.microsoft.icon"
    assert ico.get_data()[:4] == b"\x00\x00\x01\x00"  # an ICO header
    ico.close()
    html = client.get("/dashboard").get_data(as_text=True)
    assert '<link rel="icon" id="favicon" href="/dashboard/favicon.svg" type="image/svg+xml">' in html
    for stale, drawn in (("0", None), ("7", ">7</text>"), ("123", ">99+</text>"), ("-1", None), ("x", None)):
        svg = client.get(f"/dashboard/favicon.svg?stale={stale}").get_data(as_text=True)
        assert svg.startswith("<svg ")
        if drawn:
            assert drawn in svg and "#b3261e" in svg
        else:
            assert "</text>" in svg and "><" in svg.split("<text")[1] and "#17692f" in svg


def test_daemons_a_running_maintenance_window_covers_are_shown_in_maintenance(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    register(client, "alpha", capabilities=["cron"])
    register(client, "bravo", capabilities=["queue"])
    window = {
        "from": clock.now().isoformat(), "to": (clock.now() + timedelta(minutes=30)).isoformat(),
        "reason": "deploy 4.2", "capability": "cron",
    }
    opened = client.post("/api/maintenance", json=window, headers=HEADERS)
    assert opened.status_code == 201, opened.get_json()

    page = load(open_page())
    tag = row(page, "alpha").locator(".st-maintenance")
    expect(tag).to_have_text("maintenance")
    expect(tag).to_have_attribute("title", re.compile(r"^deploy 4\.2, until "))
    expect(cell(page, "alpha", STATUS)).to_contain_text("healthy")
    expect(cell(page, "alpha", STATUS)).to_contain_text("(deploy 4.2, until ")  # for screen readers
    expect(row(page, "bravo").locator(".st-maintenance")).to_have_count(0)
    colour, background = tag.evaluate("b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]")
    assert contrast_ratio(parse_rgb(colour), parse_rgb(background)) >= 4.5

    # Ended early: the next poll drops the mark.
    ended = client.delete(f"/api/maintenance/{opened.get_json()['id']}", headers=HEADERS)
    assert ended.status_code == 200
    expect(row(page, "alpha").locator(".st-maintenance")).to_have_count(0)
