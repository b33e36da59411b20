"""Session-wide fixtures: the real services the integration tests run against."""

from __future__ import annotations

import os

import pytest

# Gateways that tests start (in process or as child processes) share one Keycloak realm, where
# tests change many users. A gateway following the realm's admin events would revoke the dev
# users' cached tokens of other tests whenever any test edits them, so only the tests of that
# feature turn it on (tests/security/test_revocation.py).
os.environ.setdefault("MRO_GATEWAY_ADMIN_EVENTS_POLL_SECONDS", "0")

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.keycloak",
    "tests.fixtures.live",
]


def _drives_a_browser(item: pytest.Item) -> bool:
    return item.get_closest_marker("browser") is not None or "playwright" in getattr(
        item, "fixturenames", ()
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last.

    Playwright's sync API keeps an event loop running in the main thread while its session
    fixture is open, and pytest-asyncio refuses to start its own loop beside it.
    """
    items.sort(key=_drives_a_browser)
