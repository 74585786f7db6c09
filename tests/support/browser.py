"""A real headless Chromium (Debian's, driven by Playwright) and the real app on a real port.

Nothing is downloaded: Playwright drives /usr/bin/chromium (``apt-get install chromium``);
``playwright install`` is never needed. When Chromium or Playwright is missing the
browser tests are skipped locally and fail under CI. Only 127.0.0.1 is contacted:
any request the page makes elsewhere is refused and reported.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask

from tests.support.live_server import serving
from tests.support.paths import ROOT
from tests.support.unavailable import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
# axe-core, from npm (tests/support/node: `npm ci` there; .ci/run does it). Injected, never served.
AXE = ROOT / "tests" / "support" / "node" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 10_000

# Collects Content-Security-Policy violations before any page script runs
# (init scripts come through the DevTools protocol, which the page's CSP does not govern).
_CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install playwright; never `playwright install`)")
    if shutil.which(CHROMIUM) is None:
        skip_or_fail(f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    with serving(app) as url:
        yield url


@dataclass
class Traffic:
    """Every request a page made, what the console complained of, and any CSP violation."""

    base_url: str
    requests: list[Any] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def api_calls(self) -> list[Any]:
        return [r for r in self.requests if r.url.startswith(f"{self.base_url}/api/")]

    def unexpected_console_errors(self) -> list[str]:
        # A fetch answered 401 or refused is logged by Chromium as a resource error; those are
        # part of the tests. Anything else (a CSP refusal, a script error) is not.
        return [m for m in self.console_errors if not m.startswith("Failed to load resource")]


@dataclass
class BrowserPage:
    page: Any
    traffic: Traffic


@pytest.fixture
def open_page(browser: Any, live_url: str) -> Iterator[Any]:
    """``open_page(init_script=None, viewport=DESKTOP, color_scheme="light", reduced_motion=...)``:
    a fresh tab (own sessionStorage) watched by ``Traffic``."""
    contexts: list[Any] = []
    opened: list[BrowserPage] = []

    def open_(
        init_script: str | None = None,
        *,
        viewport: dict[str, int] = DESKTOP,
        color_scheme: str = "light",
        reduced_motion: str = "no-preference",
    ) -> BrowserPage:
        context = browser.new_context(
            viewport=viewport,
            color_scheme=color_scheme,
            reduced_motion=reduced_motion,
            service_workers="block",
        )
        contexts.append(context)
        traffic = Traffic(live_url)

        def only_local(route: Any) -> None:
            if route.request.url.startswith(f"{live_url}/"):
                route.continue_()
            else:
                traffic.outside.append(route.request.url)
                route.abort("blockedbyclient")

        context.route("**/*", only_local)
        context.add_init_script(_CSP_PROBE)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("request", lambda request: traffic.requests.append(request))
        page.on("console", lambda m: m.type == "error" and traffic.console_errors.append(m.text))
        page.on("pageerror", lambda exc: traffic.console_errors.append(f"page error: {exc}"))
        opened.append(BrowserPage(page, traffic))
        return opened[-1]

    yield open_
    try:
        for item in opened:
            if not item.page.is_closed():
                assert item.page.evaluate("window.__cspViolations") == []
            assert item.traffic.outside == [], "the page reached beyond the service"
            assert item.traffic.unexpected_console_errors() == []
    finally:
        for context in contexts:
            context.close()


def _channel(value: float) -> float:
    value /= 255
    return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4


def _luminance(rgb: tuple[int, int, int]) -> float:
    r, g, b = (_channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: tuple[int, int, int], background: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two opaque sRGB colours (4.5 is AA for body text)."""
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def parse_rgb(css: str) -> tuple[int, int, int]:
    """``rgb(1, 2, 3)`` or ``rgba(1, 2, 3, 1)`` as computed by the browser."""
    inside = css[css.index("(") + 1 : css.index(")")]
    parts = [p.strip() for p in inside.split(",")]
    assert len(parts) == 3 or float(parts[3]) == 1.0, f"not opaque: {css}"
    return int(parts[0]), int(parts[1]), int(parts[2])


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """Run axe-core on the page as it is now; each violation of these impacts, in words.

    The script is evaluated through the DevTools protocol, which the page's CSP does not govern.
    """
    if not AXE.exists():
        skip_or_fail(f"{AXE.relative_to(ROOT)} is missing: run `npm ci` in tests/support/node")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(" ".join(node["target"]) for node in v["nodes"][:5])
        for v in results["violations"]
        if v["impact"] in impacts
    ]
