"""The authentication chain: the first credential present decides."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from limits.aio.storage import MemoryStorage
from starlette.datastructures import Headers

from gateway.authn import AuthenticationChain, InvalidCredentialGuard
from gateway.context import RequestContext
from gateway.errors import AuthenticationError, RateLimited
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.ratelimit import Limit
from gateway.ratelimit_fallback import LimitsLimiter
from tests.gateway.harness import TOKENS, FakeMonotonic, ListAuditSink, TableAuthenticator, user


class KeyTable:
    """X-API-Key values looked up in a table."""

    def __init__(self, keys: Mapping[str, Identity]) -> None:
        self.keys = dict(keys)
        self.asked = 0

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        value = headers.get("x-api-key")
        if value is None:
            return None
        self.asked += 1
        if value not in self.keys:
            raise AuthenticationError("Unknown key", code="invalid_api_key")
        return self.keys[value]


SERVICE = user("apikey:k1", "service")


def _chain(clock: FakeMonotonic | None = None) -> tuple[AuthenticationChain, KeyTable]:
    keys = KeyTable({"mro_k1_secret": SERVICE})
    guard = InvalidCredentialGuard(
        LimitsLimiter(MemoryStorage(), "t"), Limit.parse("invalid-credentials", "2/minute"),
        clock or FakeMonotonic(),
    )  # fmt: skip
    chain = AuthenticationChain(
        [TableAuthenticator(TOKENS), keys], guard, Metrics(), ListAuditSink()
    )
    return chain, keys


def _context() -> RequestContext:
    return RequestContext(request_id="r" * 32, client_ip="198.51.100.1")


async def test_bearer_decides_before_the_api_key() -> None:
    """An invalid bearer token fails even when a valid API key is also sent."""
    chain, keys = _chain()
    headers = Headers({"authorization": "Bearer forged", "x-api-key": "mro_k1_secret"})
    with pytest.raises(AuthenticationError) as caught:
        await chain.authenticate(headers, _context())
    assert caught.value.code == "invalid_token"
    assert keys.asked == 0


async def test_api_key_alone_authenticates() -> None:
    """Without a bearer token the API key is asked."""
    chain, _ = _chain()
    identity = await chain.authenticate(Headers({"x-api-key": "mro_k1_secret"}), _context())
    assert identity is SERVICE


async def test_repeated_credential_fields_are_refused() -> None:
    """Two Authorization fields are ambiguous and count as an invalid credential."""
    chain, _ = _chain()
    headers = Headers(raw=[(b"authorization", b"Bearer tech-token")] * 2)
    with pytest.raises(AuthenticationError) as caught:
        await chain.authenticate(headers, _context())
    assert caught.value.code == "ambiguous_credentials"


async def test_blocked_address_expires_with_the_window() -> None:
    """Once the allowance is used up the address waits; after the window it may try again."""
    clock = FakeMonotonic()
    chain, _ = _chain(clock)
    bad = Headers({"authorization": "Bearer forged"})
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            await chain.authenticate(bad, _context())
    with pytest.raises(RateLimited) as caught:
        await chain.authenticate(Headers({"authorization": "Bearer tech-token"}), _context())
    assert 1 <= caught.value.retry_after <= 60
    clock.advance(61)
    identity = await chain.authenticate(Headers({"authorization": "Bearer tech-token"}), _context())
    assert identity.subject == "tech-1"
