"""The authentication chain: the first credential present decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from limits.aio.storage import MemoryStorage
from starlette.datastructures import Headers

from gateway.auth.chain import AuthenticationChain, InvalidCredentialGuard
from gateway.edge.request_context import RequestContext
from gateway.errors import AuthenticationError, RateLimited
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.ratelimit.fallback import LimitsLimiter
from gateway.ratelimit.rules import Decision, Limit
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


class CountingLimiter:
    """An in-memory limiter that counts the hits it was asked for."""

    def __init__(self) -> None:
        self._limiter = LimitsLimiter(MemoryStorage(), "t")
        self.hits = 0

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        self.hits += 1
        return await self._limiter.hit(key, limits)


def _chain(
    clock: FakeMonotonic | None = None,
    *,
    limiter: CountingLimiter | None = None,
    audit: ListAuditSink | None = None,
    bearer: TableAuthenticator | None = None,
) -> tuple[AuthenticationChain, KeyTable]:
    keys = KeyTable({"mro_k1_secret": SERVICE})
    guard = InvalidCredentialGuard(
        limiter or CountingLimiter(), Limit.parse("invalid-credentials", "2/minute"),
        clock or FakeMonotonic(),
    )  # fmt: skip
    chain = AuthenticationChain(
        [bearer or TableAuthenticator(TOKENS), keys], guard, Metrics(), audit or ListAuditSink()
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


async def _use_up_the_allowance(chain: AuthenticationChain) -> None:
    for n in range(2):
        with pytest.raises(AuthenticationError):
            await chain.authenticate(Headers({"authorization": f"Bearer forged-{n}"}), _context())


async def test_valid_credentials_pass_from_an_address_over_its_allowance() -> None:
    """Bad tokens from a shared address never lock out the valid bearer tokens and API keys."""
    chain, _ = _chain()
    await _use_up_the_allowance(chain)
    identity = await chain.authenticate(Headers({"authorization": "Bearer tech-token"}), _context())
    assert identity.subject == "tech-1"
    assert await chain.authenticate(Headers({"x-api-key": "mro_k1_secret"}), _context()) is SERVICE


async def test_invalid_credentials_from_an_address_over_its_allowance_get_429() -> None:
    """Over the allowance a bad credential is a 429 with the RateLimit fields, neither counted
    nor audited again."""
    limiter = CountingLimiter()
    audit = ListAuditSink()
    chain, keys = _chain(limiter=limiter, audit=audit)
    await _use_up_the_allowance(chain)
    for headers in ({"authorization": "Bearer forged-new"}, {"x-api-key": "mro_k1_wrong"}):
        with pytest.raises(RateLimited) as caught:
            await chain.authenticate(Headers(headers), _context())
        assert 1 <= caught.value.retry_after <= 60
        assert caught.value.headers["RateLimit-Policy"] == '"invalid-credentials";q=2;w=60'
        assert caught.value.headers["RateLimit"] == (
            f'"invalid-credentials";r=0;t={caught.value.retry_after}'
        )
    assert keys.asked == 1
    assert limiter.hits == 2
    assert audit.actions() == ["auth.token_rejected"] * 2


async def test_a_credential_refused_during_the_block_is_not_checked_again() -> None:
    """The same bad token sent again from a blocked address is refused without verification."""
    tokens = TableAuthenticator(TOKENS)
    chain, _ = _chain(bearer=tokens)
    await _use_up_the_allowance(chain)
    verified = tokens.verifications
    for _ in range(3):
        with pytest.raises(RateLimited):
            await chain.authenticate(Headers({"authorization": "Bearer forged-1"}), _context())
    assert tokens.verifications == verified


async def test_blocked_address_expires_with_the_window() -> None:
    """After the window a bad credential from the address is a 401 again, and counted."""
    clock = FakeMonotonic()
    limiter = CountingLimiter()
    chain, _ = _chain(clock, limiter=limiter)
    await _use_up_the_allowance(chain)
    bad = Headers({"authorization": "Bearer forged-1"})
    with pytest.raises(RateLimited):
        await chain.authenticate(bad, _context())
    clock.advance(61)
    with pytest.raises(AuthenticationError):
        await chain.authenticate(bad, _context())
    assert limiter.hits == 3
