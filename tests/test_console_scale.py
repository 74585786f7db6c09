"""The console with 10,000 daemons, measured in headless Chromium: first render, each refresh,
DOM size and requests per poll. The figures go to test-artifacts/console/scale-<backend>.json
(the README quotes the Postgres ones).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine

from tests.support.api import API_KEY
from tests.support.browser import ARTIFACTS, BrowserPage
from tests.support.clocks import FrozenClock
from tests.support.console import POLL_MS, STORAGE_KEY, expect, real_now
from tests.support.fleet_seed import seed_fleet

FLEET = 10_000
FIRST_RENDER_MS = 1000
REFRESH_MS = 200
MAX_DOM_NODES = 2500  # one page of 50 rows, the filters, 50 events: whatever the fleet's size
REFRESHES = 12

# The key is in the tab before the page loads, so the first render is timed from navigation.
SIGNED_IN = f"sessionStorage.setItem({json.dumps(STORAGE_KEY)}, {json.dumps(API_KEY)});"


def test_ten_thousand_daemons_render_fast_in_a_bounded_dom_with_requests_that_do_not_grow(
    engine: Engine, clock: FrozenClock, backend: str, open_page: Callable[..., BrowserPage]
) -> None:
    clock.current = real_now()
    seed_fleet(engine, FLEET, clock.current)
    tab = open_page(init_script=SIGNED_IN)
    page = tab.page
    page.goto(f"{tab.traffic.base_url}/dashboard?poll={POLL_MS}")
    expect(page.locator("#daemons tbody tr")).to_have_count(50)
    expect(page.locator("#page-info")).to_have_text("1–50 of 10,000")
    expect(page.locator("#count-stale")).to_have_text("100")  # 1 in 100 (fleet_seed)
    expect(page).to_have_title("(100 stale) Daemon health")
    first_render = page.evaluate("performance.getEntriesByName('first-render')[0].startTime")

    page.wait_for_function(
        "n => performance.getEntriesByName('refresh').length >= n", arg=REFRESHES, timeout=30_000
    )
    refreshes = page.evaluate("performance.getEntriesByName('refresh').map(e => e.duration)")
    elapsed_ms = page.evaluate("performance.now()")
    dom_nodes = page.evaluate("document.getElementsByTagName('*').length")
    expect(page.locator("#daemons tbody tr .strip")).to_have_count(50)  # the page's history arrived

    calls = [urlsplit(r.url) for r in tab.traffic.api_calls()]
    polls = [c for c in calls if c.path == "/api/daemons"]
    events = [c for c in calls if c.path == "/api/events"]
    histories = [c for c in calls if c.path == "/api/daemons/history"]
    regions = [c for c in calls if c.path == "/api/regions"]
    leases = [c for c in calls if c.path == "/api/leases"]
    # Each poll: one page of daemons and one read of new events; the history once for the page.
    assert {parse_qs(c.query)["limit"][0] for c in polls} == {"50"}
    assert len(events) <= len(polls) + 1
    # The slower reads run on timers of their own (a slow page of daemons on a busy machine
    # makes fewer polls, not fewer timer ticks), so they are bounded by the time elapsed.
    # The history: once, then once a minute (12 poll intervals), and on a page change.
    assert 1 <= len(histories) <= 2 + elapsed_ms // (12 * POLL_MS)
    assert all(len(parse_qs(c.query)["ids"][0].split(",")) == 50 for c in histories)
    # Regions and leases: one read of each every third poll interval (a handful of rows).
    most = 1 + elapsed_ms // (3 * POLL_MS)
    assert 1 <= len(regions) <= most and 1 <= len(leases) <= most
    per_poll = (len(polls) + len(events)) / len(polls)

    figures = {
        "backend": backend,
        "daemons": FLEET,
        "first_render_ms": round(first_render),
        "refresh_ms_median": round(statistics.median(refreshes), 1),
        "refresh_ms_max": round(max(refreshes), 1),
        "refreshes": len(refreshes),
        "dom_nodes": dom_nodes,
        "requests_per_poll": round(per_poll, 2),
        # + the history once a minute, the regions and the leases every 15 s
        "requests_per_minute_at_5s": round(per_poll * 12 + 1 + 2 * 4, 1),
    }
    (ARTIFACTS / "console").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "console" / f"scale-{backend}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(figures)
    assert first_render < FIRST_RENDER_MS, figures
    assert statistics.median(refreshes) < REFRESH_MS, figures
    assert dom_nodes < MAX_DOM_NODES, figures
