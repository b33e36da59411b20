"""The gateway's key set: static, or fetched over HTTP with a cache and a refetch cooldown."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, OctKey

from orchestrator.errors import AuthenticationError, KeysUnavailable
from orchestrator.jwks import RemoteKeySource, StaticKeySource, parse_key_set
from tests.fixtures.orchestrator import FakeClock

URL = "http://gateway.test/.well-known/jwks.json"


def ec(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def document(*keys: ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


class Gateway:
    """Serves a JWKS through httpx.MockTransport and counts the fetches."""

    def __init__(self, *keys: ECKey) -> None:
        self.document: dict[str, Any] = document(*keys)
        self.fetches = 0
        self.fail: Callable[[], httpx.Response] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.fail is not None:
            return self.fail()
        return httpx.Response(200, json=self.document)

    def source(self, clock: FakeClock, **options: Any) -> RemoteKeySource:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        return RemoteKeySource(URL, client, clock=clock, **options)


def test_parse_keeps_public_asymmetric_keys_only() -> None:
    """A parsed set drops symmetric keys and private halves."""
    private = ec("a")
    doc = {"keys": [private.as_dict(private=True), OctKey.generate_key(256).as_dict()]}
    keys = parse_key_set(doc)
    assert [key.kid for key in keys] == ["a"]
    assert not next(iter(keys)).is_private


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"keys": "nope"},
        {"keys": []},
        {"keys": [OctKey.generate_key(256).as_dict()]},
        {"keys": [{"kty": "EC", "crv": "P-256", "x": "broken"}]},
    ],
)
def test_parse_refuses_documents_without_usable_keys(doc: dict[str, Any]) -> None:
    """A document without a usable asymmetric key is a ValueError."""
    with pytest.raises(ValueError, match=r"JWKS|keys"):
        parse_key_set(doc)


async def test_static_source_finds_known_kid_only(tmp_path: Path) -> None:
    """A static set (also read from a file) gives its keys by kid; others are unknown_key."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document(ec("a"), ec("b"))))
    source = StaticKeySource.from_file(path)
    assert (await source.key_for("b")).kid == "b"
    await source.check()
    with pytest.raises(AuthenticationError) as caught:
        await source.key_for("c")
    assert caught.value.code == "unknown_key"


async def test_remote_source_fetches_once_then_serves_from_cache() -> None:
    """Known kids are served from the cache until it goes stale, then fetched again."""
    clock = FakeClock()
    gateway = Gateway(ec("a"))
    source = gateway.source(clock, cache_seconds=600, cooldown_seconds=30)
    for _ in range(5):
        assert (await source.key_for("a")).kid == "a"
    assert gateway.fetches == 1
    clock.advance(601)
    await source.key_for("a")
    assert gateway.fetches == 2


async def test_unknown_kid_refetches_at_most_once_per_cooldown() -> None:
    """An unknown kid refetches once; more unknown kids within the cooldown fetch nothing."""
    clock = FakeClock()
    gateway = Gateway(ec("a"))
    source = gateway.source(clock, cooldown_seconds=30)
    await source.key_for("a")
    clock.advance(31)
    for kid in ("x", "y", "z"):
        with pytest.raises(AuthenticationError):
            await source.key_for(kid)
    assert gateway.fetches == 2
    clock.advance(31)
    with pytest.raises(AuthenticationError):
        await source.key_for("x")
    assert gateway.fetches == 3


async def test_rotated_key_is_found_after_one_refetch() -> None:
    """A key the gateway starts signing with is picked up by the unknown-kid refetch."""
    clock = FakeClock()
    gateway = Gateway(ec("old"))
    source = gateway.source(clock, cooldown_seconds=30)
    await source.key_for("old")
    gateway.document = document(ec("old"), ec("new"))
    clock.advance(30)
    assert (await source.key_for("new")).kid == "new"


async def test_concurrent_unknown_kids_share_one_fetch() -> None:
    """Many requests naming unknown kids at once cause a single fetch."""
    clock = FakeClock()
    gateway = Gateway(ec("a"))
    source = gateway.source(clock, cooldown_seconds=30)
    results = await asyncio.gather(
        *(source.key_for(f"forged-{n}") for n in range(20)), return_exceptions=True
    )
    assert all(isinstance(result, AuthenticationError) for result in results)
    assert gateway.fetches == 1


@pytest.mark.parametrize(
    "failure",
    [
        lambda: httpx.Response(500, text="boom"),
        lambda: httpx.Response(200, text="not json"),
        lambda: httpx.Response(200, json={"keys": []}),
    ],
    ids=["http-500", "not-json", "no-keys"],
)
async def test_fetch_failure_without_cache_is_keys_unavailable(
    failure: Callable[[], httpx.Response],
) -> None:
    """With nothing cached, a failed fetch raises KeysUnavailable (not an httpx error)."""
    gateway = Gateway(ec("a"))
    gateway.fail = failure
    source = gateway.source(FakeClock())
    with pytest.raises(KeysUnavailable):
        await source.key_for("a")
    with pytest.raises(KeysUnavailable):
        await source.check()


async def test_unreachable_gateway_is_keys_unavailable() -> None:
    """A connection error while fetching is wrapped as KeysUnavailable."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    source = RemoteKeySource(URL, client, clock=FakeClock())
    with pytest.raises(KeysUnavailable) as caught:
        await source.key_for("a")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_failed_refresh_keeps_the_cached_keys(caplog: pytest.LogCaptureFixture) -> None:
    """When a refresh fails, the stale keys keep verifying and the failure is logged."""
    clock = FakeClock()
    gateway = Gateway(ec("a"))
    source = gateway.source(clock, cache_seconds=60, cooldown_seconds=30)
    await source.key_for("a")
    gateway.fail = lambda: httpx.Response(503)
    clock.advance(120)
    with caplog.at_level(logging.WARNING, logger="orchestrator.jwks"):
        assert (await source.key_for("a")).kid == "a"
    assert gateway.fetches == 2
    assert "keeping the cached keys" in caplog.text
    await source.check()
    assert gateway.fetches == 2


async def test_check_fetches_when_nothing_is_cached() -> None:
    """Readiness fetches the set once when none is cached yet."""
    gateway = Gateway(ec("a"))
    source = gateway.source(FakeClock())
    await source.check()
    await source.check()
    assert gateway.fetches == 1
