"""The operator's console in a real headless Chromium: at a glance, find and drill down,
any screen, accessible (axe-core), shareable URLs. Screenshots of every view go to
test-artifacts/console/ (light and dark, 1400×900 and 390×844, and one 4K).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from tests.support.api import API_KEY
from tests.support.browser import ARTIFACTS, DESKTOP, PHONE, BrowserPage, axe_violations
from tests.support.clocks import FrozenClock
from tests.support.console import (
    POLL_MS,
    STORAGE_KEY,
    acquire,
    beat,
    enter_key,
    expect,
    load,
    no_horizontal_scroll,
    real_now,
    register,
    release,
    row,
    watcher_tick,
)
from tests.support.fleet_seed import seed_fleet

SHOTS = ARTIFACTS / "console"
FOUR_K = {"width": 3840, "height": 2160}


def a_small_fleet(client: FlaskClient, clock: FrozenClock) -> None:
    """gone (stale), sick (unhealthy), slow (degraded), alpha and bravo (healthy, with tasks)."""
    start = real_now()
    clock.current = start - timedelta(seconds=90)
    register(client, "gone", capabilities=["cron"])
    clock.current = start - timedelta(seconds=20)
    register(client, "alpha", capabilities=["queue"])
    register(client, "bravo", capabilities=["queue", "cron"])
    register(client, "sick", capabilities=["queue"])
    register(client, "slow", capabilities=["export"])
    clock.current = start
    beat(client, "alpha", tasksProcessed=120, tasksFailed=6, taskTimeMs=24_000)
    beat(client, "bravo", tasksProcessed=40, taskTimeMs=2_000)
    beat(client, "sick", status="unhealthy", tasksProcessed=5, tasksFailed=5)
    beat(client, "slow", status="degraded", tasksProcessed=0)


def test_problems_come_first_with_coloured_counts_a_strip_and_the_stale_count_in_the_tab(
    app: Flask, client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    a_small_fleet(client, clock)
    tab = open_page()
    page = load(tab)
    expect(page.locator("#daemons tbody th")).to_have_text(["gone", "sick", "slow", "alpha", "bravo"])
    for status, n in (("stale", "1"), ("unhealthy", "1"), ("degraded", "1"), ("healthy", "2")):
        expect(page.locator(f"#count-{status}")).to_have_text(n)
    # Coloured when something is wrong; the healthy count never is.
    for status in ("stale", "unhealthy", "degraded"):
        expect(page.locator(f".count[data-status={status}]")).to_have_class(re.compile(r"\balarm\b"))
    expect(page.locator(".count[data-status=healthy]")).not_to_have_class(re.compile(r"\balarm\b"))
    # The tab: title and icon carry the stale count; the icon says it too.
    expect(page).to_have_title("(1 stale) Daemon health")
    assert page.locator("#favicon").get_attribute("href").endswith("/dashboard/favicon.svg?stale=1")
    icon = client.get("/dashboard/favicon.svg?stale=1")
    assert icon.mimetype == "image/svg+xml" and ">1</text>" in icon.get_data(as_text=True)
    # The 24 h strip: its words are its accessible name; gone went down 30 s ago.
    strip = row(page, "gone").locator(".strip")
    expect(strip).to_have_attribute("aria-label", re.compile(r"^Last 24 h: down \d\d:\d\d–\d\d:\d\d$"))
    expect(row(page, "alpha").locator(".strip")).to_have_attribute("aria-label", "Last 24 h: up throughout")
    expect(row(page, "alpha").locator("td.uptime")).to_have_text("100 %")
    # Issue 14's chart per daemon: tasks per half hour, failures in them.
    spark = row(page, "alpha").locator("svg.spark")
    expect(spark).to_have_attribute("aria-label", re.compile(r"^120 tasks in 24 h, 6 failed"))
    expect(row(page, "alpha").locator("td").nth(9)).to_have_text("5.00 % of 120")
    expect(row(page, "slow").locator("td.chart")).to_have_text("—none")

    # When /health reaps the stale daemon and two others go stale, the tab follows.
    clock.advance(45)
    beat(client, "alpha", tasksProcessed=120)
    beat(client, "bravo", tasksProcessed=40)
    clock.advance(20)
    health = client.get("/api/daemon/health", headers={"X-API-Key": API_KEY}).get_json()
    assert [d["daemonId"] for d in health["stale"]] == ["gone", "sick", "slow"]
    expect(page).to_have_title("Daemon health")
    assert page.locator("#favicon").get_attribute("href").endswith("/dashboard/favicon.svg")
    register(client, "gone")
    clock.advance(65)
    expect(page).to_have_title("(3 stale) Daemon health")
    assert page.locator("#favicon").get_attribute("href").endswith("?stale=3")


def test_search_and_filters_change_a_shareable_url_without_the_key(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    a_small_fleet(client, clock)
    tab = open_page()
    page = load(tab)
    expect(page.locator("#daemons tbody tr")).to_have_count(5)

    page.get_by_label("Search id").fill("L")
    expect(page.locator("#daemons tbody th")).to_have_text(["slow", "alpha"])
    expect(page).to_have_url(re.compile(r"/dashboard\?q=L&poll=\d+$"))
    page.get_by_label("Status").select_option(label="Healthy")
    expect(page.locator("#daemons tbody th")).to_have_text(["alpha"])
    page.get_by_label("Search id").fill("")
    page.get_by_label("Capability").fill("cron")
    expect(page.locator("#daemons tbody th")).to_have_text(["bravo"])
    expect(page.locator("#matching")).to_contain_text("1–1 of 1 matching")
    shared = page.url
    assert API_KEY not in shared and "key" not in shared.lower()
    page.get_by_label("Status").select_option(label="Needs attention")
    expect(page.locator("#daemons tbody th")).to_have_text(["gone"])
    page.get_by_label("Capability").fill("nothing-has-this")
    expect(page.locator("#daemons td.empty")).to_have_text("No daemon matches these filters.")

    # The shared link in another tab (its own session): the key is asked for, then the same view.
    other = open_page()
    other.page.goto(shared)
    enter_key(other.page, API_KEY)
    expect(other.page.locator("#daemons tbody th")).to_have_text(["bravo"])
    expect(other.page.get_by_label("Capability")).to_have_value("cron")
    expect(other.page.get_by_label("Status")).to_have_value("healthy")
    # A header count is a link to its filter.
    other.page.get_by_role("link", name="1 stale").click()
    expect(other.page.locator("#daemons tbody th")).to_have_text(["gone"])
    expect(other.page).to_have_url(re.compile(r"/dashboard\?status=stale"))


def test_paging_is_by_keyboard_and_keeps_the_dom_to_a_page(
    engine: Engine, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    seed_fleet(engine, 120, clock.current)
    tab = open_page()
    page = load(tab)
    rows = page.locator("#daemons tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#page-info")).to_have_text("1–50 of 120")
    expect(rows.first.locator("th")).to_have_text("daemon-00000")  # stale first
    expect(page.locator("#page-prev")).to_be_disabled()
    page.locator("#page-next").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#page-info")).to_have_text("51–100 of 120")
    expect(rows).to_have_count(50)
    page.locator("#page-next").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#page-info")).to_have_text("101–120 of 120")
    expect(rows).to_have_count(20)
    expect(page.locator("#page-next")).to_be_disabled()
    page.locator("#page-prev").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#page-info")).to_have_text("51–100 of 120")
    page.locator("#page-first").click()
    expect(page.locator("#page-info")).to_have_text("1–50 of 120")
    # Every page asked for its own daemons' history, never the fleet's.
    history_calls = [r.url for r in tab.traffic.api_calls() if "/api/daemons/history" in r.url]
    assert history_calls and all(r.count("%2C") == 49 or "daemon-001" in r for r in history_calls)


def test_a_daemon_page_shows_its_state_down_intervals_status_split_and_task_charts(
    app: Flask, client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    start = real_now()
    clock.current = start - timedelta(hours=3)
    register(client, "worker", capabilities=["queue"])
    for minute in range(1, 60):  # an hour of work, then silence
        clock.current = start - timedelta(hours=3) + timedelta(minutes=minute)
        beat(client, "worker", status="degraded" if minute > 40 else "healthy",
             tasksProcessed=minute * 10, tasksFailed=minute, taskTimeMs=minute * 1000)
    # No watcher ticks here: one that ticked, then went quiet for two hours, would read the
    # silence as the service's own outage and grant the daemon grace (README, Alerts).
    clock.current = start - timedelta(seconds=30)
    register(client, "worker", capabilities=["queue"], version="2.3")  # back after two hours down
    clock.current = start
    beat(client, "worker", tasksProcessed=0)

    tab = open_page()
    page = load(tab)
    row(page, "worker").get_by_role("link", name="worker").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/dashboard/daemons/worker\?poll=\d+$"))
    expect(page.get_by_role("heading", name="worker", level=2)).to_be_visible()
    expect(page).to_have_title("worker · Daemon health")
    state = page.locator("#detail-state")
    expect(state).to_contain_text("healthy")
    expect(state).to_contain_text("2.3")
    expect(page.locator("#detail-uptime")).to_contain_text("up over the last 24 hours, 1 incident")
    intervals = page.locator("#down-intervals tbody tr")
    expect(intervals).to_have_count(1)
    expect(intervals.first).to_contain_text("went silent (stale)")
    expect(intervals.first.locator("td").nth(2)).to_have_text("1 h 59 min")
    expect(page.locator("#split-legend li")).to_have_text(
        [re.compile(r"^Healthy "), re.compile(r"^Degraded 19 min"), re.compile(r"^Down 1 h 59 min")]
    )
    expect(page.locator("#detail-tasks")).to_contain_text("590 tasks, 59 failed (10.00 %)")
    for chart in ("chart-tasks", "chart-errors", "chart-time"):
        expect(page.locator(f"#{chart} svg")).to_have_attribute("aria-label", re.compile(r"hourly: peak "))

    # Another period is a link too (shareable), and marks itself as the current one.
    page.get_by_role("link", name="7 days").click()
    expect(page).to_have_url(re.compile(r"/dashboard/daemons/worker\?window=7d&poll=\d+$"))
    expect(page.get_by_role("link", name="7 days")).to_have_attribute("aria-current", "page")
    expect(page.locator("#detail-uptime")).to_contain_text("over the last 7 days")

    # Back to the list with the browser's back button, twice.
    page.go_back()
    page.go_back()
    expect(row(page, "worker")).to_have_count(1)
    # A daemon no longer in the registry still has its page, with its history.
    assert client.delete("/api/daemon/worker", headers={"X-API-Key": API_KEY}).status_code == 200
    clock.advance(60)
    page.goto(f"{tab.traffic.base_url}/dashboard/daemons/worker?poll={POLL_MS}")
    expect(page.locator("#detail-missing")).to_contain_text("worker is not in the registry")
    expect(page.locator("#down-intervals tbody tr").first).to_contain_text("planned (deregistered)")


def test_reduced_motion_stops_the_alarm_pulse(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    a_small_fleet(client, clock)
    pulse = ".count[data-status=stale] strong"
    moving = load(open_page())
    expect(moving.locator(pulse)).to_have_text("1")
    assert moving.locator(pulse).evaluate("e => getComputedStyle(e).animationName") == "pulse"
    still = load(open_page(reduced_motion="reduce"))
    expect(still.locator(pulse)).to_have_text("1")
    assert still.locator(pulse).evaluate("e => getComputedStyle(e).animationName") == "none"


# A day of history for 60 daemons; daemon-00058 had a degraded spell, an outage and an unhealthy one.
VIEWS = {
    "key": None,
    "list": "/dashboard",
    "daemon": "/dashboard/daemons/daemon-00058",
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_view_fits_passes_axe_and_is_screenshotted(
    engine: Engine, client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage],
    backend: str, scheme: str,
) -> None:
    clock.current = real_now()
    seed_fleet(engine, 60, clock.current, day=True)
    acquire(client, "nightly-report", "daemon-00058")  # held, on the list and on its page
    acquire(client, "cleanup", "daemon-00001")
    release(client, "cleanup", "daemon-00001")  # free: shown as free
    SHOTS.mkdir(parents=True, exist_ok=True)
    sizes = {"1400x900": DESKTOP, "390x844": PHONE}
    if scheme == "light":
        sizes["3840x2160"] = FOUR_K
    for size, viewport in sizes.items():
        tab = open_page(viewport=viewport, color_scheme=scheme)
        page = tab.page
        background = None
        for name, path in VIEWS.items():
            if path is None:
                page.goto(f"{tab.traffic.base_url}/dashboard?poll={POLL_MS}")
                expect(page.get_by_label("API key")).to_be_focused()
            else:
                if page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") is None:
                    enter_key(page, API_KEY)
                page.goto(f"{tab.traffic.base_url}{path}?poll={POLL_MS}")
                ready = "#daemons tbody tr .strip" if name == "list" else "#chart-tasks svg"
                expect(page.locator(ready).first).to_be_visible()
            page.wait_for_timeout(2 * POLL_MS)
            no_horizontal_scroll(page)
            assert axe_violations(page) == [], (name, size, scheme)
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            if backend == "sqlite":  # the same pixels either way: one set of pictures
                page.screenshot(path=str(SHOTS / f"{name}-{size}-{scheme}.png"))  # the first screen
                page.screenshot(path=str(SHOTS / f"{name}-{size}-{scheme}-full.png"), full_page=True)
        assert (background == "rgb(18, 20, 23)") == (scheme == "dark")


def test_the_accessibility_check_can_fail(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    """axe really runs: a field without a label and grey-on-grey text are caught."""
    a_small_fleet(client, clock)
    page = load(open_page())
    expect(row(page, "alpha")).to_have_count(1)
    assert axe_violations(page) == []
    page.evaluate(
        """() => {
          const input = document.createElement("input");
          const faint = document.createElement("p");
          faint.textContent = "barely there";
          faint.style.color = "#ddd";
          document.querySelector("main").append(input, faint);
        }"""
    )
    found = " ".join(axe_violations(page))
    assert "label" in found and "color-contrast" in found


def test_keyboard_alone_reaches_the_content_filters_and_a_daemon(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    a_small_fleet(client, clock)
    page = load(open_page())
    page.reload()  # the key stays in the tab; focus starts at the top of the document
    expect(row(page, "alpha")).to_have_count(1)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Search id")).to_be_focused()
    page.keyboard.type("alp")
    expect(page.locator("#daemons tbody th")).to_have_text(["alpha"])
    for _ in range(20):  # on through the filters to the first daemon's link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#daemons th') !== null"):
            break
    expect(page.get_by_role("link", name="alpha", exact=True).first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="alpha", level=2)).to_be_focused()
    expect(page.locator("#detail-state")).to_contain_text("healthy")
