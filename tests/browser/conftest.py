"""Debian's Chromium driven by Playwright against the live stack (``live_stack``).

The browser is the system package (``shutil.which("chromium")``), never a downloaded one. Each
test gets its own context (cookies, cache) at tablet size; page errors and Content-Security-Policy
reports from the console are collected so tests can assert the UI ran cleanly. Screenshots go to
``test-artifacts/browser/`` (git-ignored), and one is taken of every failing test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from tests.browser.pages import Ui

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TABLET = {"width": 1024, "height": 768}


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver for the session (sync API)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is not installed: apt-get install chromium (scripts/bootstrap.sh)")
    browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def open_ui(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Ui]]:
    """Open a fresh browser context on the gateway: ``open_ui(gateway_url, width=…)``."""
    opened: list[Ui] = []

    def open_(gateway_url: str, *, width: int = TABLET["width"]) -> Ui:
        context = chromium.new_context(
            viewport={"width": width, "height": TABLET["height"]},
            locale="en-GB",
            timezone_id="UTC",
            base_url=gateway_url,
        )
        context.set_default_timeout(20_000)
        # Waits, not bounds on speed: a loaded CI machine may take more than the default 5 s
        # to render a page while the rest of the suite runs.
        expect.set_options(timeout=15_000)
        ui = Ui(context.new_page(), gateway_url)
        opened.append(ui)
        return ui

    yield open_
    failed = request.node.stash.get(_FAILED, False)
    for number, ui in enumerate(opened):
        if failed:
            ui.shot(f"FAILED-{request.node.name}-{number}")
        ui.page.context.close()
