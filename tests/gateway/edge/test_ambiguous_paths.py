"""Ambiguous request paths are refused before routing."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from gateway.edge.ambiguous_paths import check_path
from gateway.errors import BadRequest


def _scope(raw: bytes) -> dict[str, object]:
    return {"raw_path": raw, "path": unquote(raw.decode("latin-1"))}


@pytest.mark.parametrize(
    "raw",
    [
        b"/api/../admin",
        b"/api/./agents",
        b"/api/agents/..",
        b"/api/%2e%2e/admin",
        b"/api/%2E%2E/admin",
        b"/api/.%2e/admin",
        b"/api/conversations%2fx",
        b"/api/conversations%2Fx",
        b"/api/conversations%5cx",
        b"/api/conversations%252fx",
        b"/api/conversations\\x",
        b"/api/conversations%00",
        b"/api//agents",
        b"//api/agents",
        b"/api/agents%0a",
        b"/api/agents%7f",
        b"/api/agents%c2%85",
        b"/api/agents%c0%ae",
        b"/api/agents%zz",
        b"/api/agents%2",
        b"/api/ag\xc3\xa9nts",
        b"/api/agents\x01",
        b"api/agents",
    ],
)
def test_ambiguous_paths_are_refused(raw: bytes) -> None:
    """Each dot-segment, encoded separator, double encoding or control character is a 400."""
    with pytest.raises(BadRequest) as caught:
        check_path(_scope(raw))
    assert caught.value.code == "ambiguous_path"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "raw",
    [b"/", b"/api/agents", b"/api/conversations/3f2a-11", b"/api/x%20y", b"/api/caf%C3%A9", b"/a/"],
)
def test_plain_paths_pass(raw: bytes) -> None:
    """Ordinary paths, including escaped spaces and UTF-8 letters, are accepted."""
    check_path(_scope(raw))


def test_query_is_not_part_of_the_check() -> None:
    """A query string may hold what a path may not (it is not used for routing)."""
    check_path({"raw_path": b"/api/agents", "path": "/api/agents", "query_string": b"q=../%2f"})
