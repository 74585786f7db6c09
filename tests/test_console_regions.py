"""The console's regions and leases in a real headless Chromium: each region's counts and its
disrupted badge (an outage recorded by the real watcher on a moved clock), the region filter in
the shareable URL, who holds each lease and the leases on a daemon's page; axe-core, 390 px, and
screenshots to test-artifacts/console/ (light and dark, 1400×900 and 390×844).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.api import API_KEY
from tests.support.browser import ARTIFACTS, DESKTOP, PHONE, BrowserPage, axe_violations
from tests.support.clocks import FrozenClock
from tests.support.console import (
    POLL_MS,
    a_disrupted_region,
    acquire,
    expect,
    load,
    no_horizontal_scroll,
    real_now,
    regions,
    register,
    release,
    row,
    watcher_tick,
)

SHOTS = ARTIFACTS / "console"


def region_card(page: Any, name: str) -> Any:
    return page.locator("#regions li").filter(has=page.get_by_role("link", name=name, exact=True))


def lease_row(page: Any, name: str) -> Any:
    header = page.get_by_role("rowheader", name=name, exact=True)
    return page.locator("#leases tbody tr").filter(has=header)


def test_regions_show_their_counts_and_a_disrupted_badge_and_filter_the_list_from_the_url(
    app: Flask, client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    a_disrupted_region(app, client, clock)
    tab = open_page()
    page = load(tab)
    expect(page.locator("#regions li")).to_have_count(3)  # eu-west, us-east, then no region
    eu, us = region_card(page, "eu-west"), region_card(page, "us-east")
    expect(eu.locator(".badge")).to_have_text("disrupted")
    expect(eu).to_have_class(re.compile(r"\bdisrupted\b"))
    expect(eu.locator(".region-counts")).to_have_text("1 active 4 stale 0 unhealthy 1 degraded")
    expect(eu.locator(".alarm-stale")).to_have_count(1)
    expect(us.locator(".badge")).to_have_count(0)
    expect(us).not_to_have_class(re.compile(r"\bdisrupted\b"))
    expect(us.locator(".region-counts")).to_have_text("2 active 0 stale 1 unhealthy 0 degraded")
    expect(page.locator("#regions li").last).to_contain_text("no region")
    expect(page.locator("#regions li").last.locator(".region-counts")).to_contain_text("1 active")
    expect(page.locator("#announce")).to_have_text("")  # an outage older than the page is not news
    # Each row says where its daemon runs; none for the daemon without a region.
    expect(row(page, "u1").locator("td.region")).to_have_text("us-east")
    expect(row(page, "solo").locator("td.region")).to_have_text("—none")
    assert axe_violations(page) == []

    # The filter beside the others: the URL follows, and a reload from it shows the same.
    page.get_by_label("Region", exact=True).select_option("us-east")
    expect(page.locator("#daemons tbody th")).to_have_text(["u2", "u1"])  # unhealthy first
    expect(page).to_have_url(re.compile(r"/dashboard\?region=us-east&poll=\d+$"))
    page.get_by_label("Status").select_option(label="Healthy")
    expect(page.locator("#daemons tbody th")).to_have_text(["u1"])
    page.reload()
    expect(page.locator("#daemons tbody th")).to_have_text(["u1"])
    expect(page.get_by_label("Region", exact=True)).to_have_value("us-east")
    expect(page.get_by_label("Status")).to_have_value("healthy")
    # A region's name is a link to its daemons.
    region_card(page, "eu-west").get_by_role("link", name="eu-west").click()
    expect(page).to_have_url(re.compile(r"/dashboard\?region=eu-west&poll=\d+$"))
    expect(page.locator("#daemons tbody th")).to_have_text(["w1", "w2", "w3", "w4", "w5"])
    expect(page.get_by_label("Region", exact=True)).to_have_value("eu-west")
    # The daemon's page says its region too.
    row(page, "w5").get_by_role("link", name="w5").click()
    expect(page.locator("#detail-state")).to_contain_text(re.compile(r"Region\s*eu-west"))

    # Three come back and the watcher records the recovery: the open page loses the badge.
    clock.advance(5)
    for n in (1, 2, 3):
        register(client, f"w{n}", region="eu-west")
    watcher_tick(app)
    assert regions(client)["eu-west"]["disrupted"] is False
    page.get_by_role("link", name="All daemons").click()
    expect(eu.locator(".region-counts")).to_have_text("4 active 1 stale 0 unhealthy 1 degraded")
    expect(eu.locator(".badge")).to_have_count(0)
    expect(eu).not_to_have_class(re.compile(r"\bdisrupted\b"))
    expect(page.locator("#announce")).to_have_text("Region eu-west recovered.")  # screen readers hear it


def test_a_shared_link_to_a_region_filters_before_the_regions_arrive(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    register(client, "a1", region="ap-south")
    register(client, "e1", region="eu-west")
    register(client, "plain")
    page = load(open_page(), query="region=ap-south")
    expect(page.locator("#daemons tbody th")).to_have_text(["a1"])
    expect(page.get_by_label("Region", exact=True)).to_have_value("ap-south")
    # The options are the regions /api/regions knows (those without a region cannot be picked).
    expect(page.locator("#filter-region option")).to_have_text(["Any region", "ap-south", "eu-west"])
    page.get_by_label("Region", exact=True).select_option(label="Any region")
    expect(page.locator("#daemons tbody th")).to_have_text(["a1", "e1", "plain"])
    expect(page).to_have_url(re.compile(r"/dashboard\?poll=\d+$"))


def test_a_fleet_without_regions_shows_no_region_panel_or_filter(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    register(client, "plain")
    page = load(open_page())
    expect(row(page, "plain")).to_have_count(1)
    # Regions and leases were read (the one entry, "no region", is drawn), and both stay hidden.
    expect(page.locator("#regions li")).to_have_count(1)
    expect(page.locator("#regions-panel")).to_be_hidden()
    expect(page.get_by_label("Region", exact=True)).to_be_hidden()
    expect(page.locator("#leases-panel")).to_be_hidden()  # no lease was ever taken


def test_lease_holders_link_to_their_daemons_whose_pages_list_their_leases(
    client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    for daemon_id in ("alpha", "bravo", "idle"):
        register(client, daemon_id)
    nightly = acquire(client, "nightly-report", "alpha")
    acquire(client, "queue-writer", "bravo")
    acquire(client, "cleanup", "bravo")
    release(client, "cleanup", "bravo")

    tab = open_page()
    page = load(tab)
    expect(page.locator("#leases tbody th")).to_have_text(["cleanup", "nightly-report", "queue-writer"])
    held = lease_row(page, "nightly-report")
    expect(held.get_by_role("link", name="alpha")).to_have_count(1)
    expect(held.locator("td").nth(1)).to_have_text("1")  # the fencing token
    expect(held.locator("time").first).to_have_attribute("datetime", nightly["acquiredAt"])
    expect(held.locator("time").last).to_have_attribute("datetime", nightly["expiresAt"])
    free = lease_row(page, "cleanup")
    expect(free.locator("td").first).to_have_text("free")
    expect(free.locator("td").nth(2)).to_have_text("—none")  # no holder, so no since
    assert axe_violations(page) == []

    held.get_by_role("link", name="alpha").click()
    expect(page).to_have_url(re.compile(r"/dashboard/daemons/alpha\?poll=\d+$"))
    held_here = re.compile(r"^nightly-report token 1, since .+, expires .+$")
    expect(page.locator("#held li")).to_have_text([held_here])
    page.goto(f"{tab.traffic.base_url}/dashboard/daemons/bravo?poll={POLL_MS}")
    expect(page.locator("#held li")).to_have_text([re.compile(r"^queue-writer token 1")])
    page.goto(f"{tab.traffic.base_url}/dashboard/daemons/idle?poll={POLL_MS}")
    expect(page.locator("#held li")).to_have_text(["None."])
    assert axe_violations(page) == []

    # The holder deregisters: its lease is free at once, on the list and on its page.
    assert client.delete("/api/daemon/alpha", headers={"X-API-Key": API_KEY}).status_code == 200
    page.goto(f"{tab.traffic.base_url}/dashboard/daemons/alpha?poll={POLL_MS}")
    expect(page.locator("#held li")).to_have_text(["None."])
    page.get_by_role("link", name="All daemons").click()
    expect(lease_row(page, "nightly-report").locator("td").first).to_have_text("free")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_regions_and_leases_fit_a_phone_pass_axe_and_are_screenshotted(
    app: Flask, client: FlaskClient, clock: FrozenClock, open_page: Callable[..., BrowserPage],
    backend: str, scheme: str,
) -> None:
    a_disrupted_region(app, client, clock)
    acquire(client, "nightly-report", "u1")
    acquire(client, "queue-writer", "w5")
    acquire(client, "cleanup", "solo")
    release(client, "cleanup", "solo")  # free: shown as free
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in {"1400x900": DESKTOP, "390x844": PHONE}.items():
        tab = open_page(viewport=viewport, color_scheme=scheme)
        for name, path, ready in (
            ("regions-leases", "/dashboard", "#leases tbody tr"),
            ("daemon-leases", "/dashboard/daemons/u1", "#held li .name"),
        ):
            page = load(tab, path=path, key=API_KEY if name == "regions-leases" else None)
            expect(page.locator(ready).first).to_be_visible()
            page.wait_for_timeout(2 * POLL_MS)
            no_horizontal_scroll(page)
            assert axe_violations(page) == [], (name, size, scheme)
            if backend == "sqlite":  # the same pixels either way: one set of pictures
                page.screenshot(path=str(SHOTS / f"{name}-{size}-{scheme}.png"))
                page.screenshot(path=str(SHOTS / f"{name}-{size}-{scheme}-full.png"), full_page=True)
