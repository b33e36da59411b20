"""The JWKS cache against a real OpenID provider on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from joserfc.jwk import OctKey, RSAKey

from devstack.procs import free_port
from gateway.auth.jwks import JWKSCache
from gateway.errors import AuthenticationError, DependencyUnavailable
from tests.gateway.keys import FakeClock, LocalIdP, ec_key, rsa_key, running_idp

CERTS = "/openid-connect/certs"
DISCOVERY = "/openid-configuration"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def idp(clock: FakeClock) -> Iterator[LocalIdP]:
    with running_idp(LocalIdP(keys=[rsa_key("k1"), ec_key("k2")], clock=clock)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as client:
        yield client


def make_cache(url: str, http: httpx.AsyncClient, clock: FakeClock) -> JWKSCache:
    return JWKSCache(url, http, cache_seconds=600, refetch_cooldown_seconds=30, clock=clock)


async def test_keys_come_from_the_discovered_jwks_uri(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The first lookup reads discovery then the JWKS, and returns the published public key."""
    cache = make_cache(idp.discovery_url, http, clock)
    key = await cache.get_key("k1")
    assert isinstance(key, RSAKey)
    assert key.as_dict() == idp.keys[0].as_dict(private=False)
    assert (idp.count(DISCOVERY), idp.count(CERTS)) == (1, 1)


async def test_known_kids_are_served_from_the_cache(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Repeated lookups of known kids within cache_seconds fetch nothing more."""
    cache = make_cache(idp.discovery_url, http, clock)
    for _ in range(20):
        await cache.get_key("k1")
        await cache.get_key("k2")
    clock.advance(599)
    await cache.get_key("k1")
    assert idp.count(CERTS) == 1


async def test_key_set_is_refetched_after_cache_seconds(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Once the set is older than cache_seconds the next lookup refetches it (not discovery)."""
    cache = make_cache(idp.discovery_url, http, clock)
    await cache.get_key("k1")
    clock.advance(600)
    await cache.get_key("k1")
    assert (idp.count(DISCOVERY), idp.count(CERTS)) == (1, 2)


async def test_unknown_kid_refetches_once_then_fails(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """An unknown kid costs one refetch; more unknown kids inside the cooldown cost none."""
    cache = make_cache(idp.discovery_url, http, clock)
    await cache.get_key("k1")
    clock.advance(31)
    with pytest.raises(AuthenticationError) as first:
        await cache.get_key("forged")
    assert first.value.code == "unknown_kid"
    assert idp.count(CERTS) == 2
    for kid in ("forged-2", "forged-3"):
        with pytest.raises(AuthenticationError):
            await cache.get_key(kid)
    assert idp.count(CERTS) == 2


async def test_flood_of_unknown_kids_costs_one_fetch_per_cooldown(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """100 concurrent lookups of forged kids share one fetch; the next window allows one more."""
    cache = make_cache(idp.discovery_url, http, clock)
    await cache.get_key("k1")
    clock.advance(30)
    results = await asyncio.gather(
        *(cache.get_key(f"forged-{n}") for n in range(100)), return_exceptions=True
    )
    assert all(isinstance(r, AuthenticationError) and r.code == "unknown_kid" for r in results)
    assert idp.count(CERTS) == 2
    clock.advance(29)
    await asyncio.gather(*(cache.get_key(f"again-{n}") for n in range(100)), return_exceptions=True)
    assert idp.count(CERTS) == 2
    clock.advance(1)
    await asyncio.gather(*(cache.get_key(f"later-{n}") for n in range(100)), return_exceptions=True)
    assert idp.count(CERTS) == 3


async def test_rotated_in_key_is_found_by_refetch(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A key Keycloak starts publishing is picked up on the first token that names it."""
    cache = make_cache(idp.discovery_url, http, clock)
    await cache.get_key("k1")
    idp.keys.append(rsa_key("k3"))
    clock.advance(30)
    key = await cache.get_key("k3")
    assert key.kid == "k3"


async def test_only_asymmetric_signing_keys_are_kept(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Symmetric keys, encryption keys and broken entries in the JWKS are ignored."""
    encryption = rsa_key("enc").as_dict(private=False)
    encryption["use"] = "enc"
    idp.extra_entries.extend(
        [
            OctKey.generate_key(256, parameters={"kid": "oct"}).as_dict(private=True),
            encryption,
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": "x"},
            "not-a-key",
        ]
    )
    cache = make_cache(idp.discovery_url, http, clock)
    await cache.get_key("k1")
    assert cache.kids == {"k1", "k2"}


async def test_private_members_of_a_published_key_are_dropped(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A JWKS that leaks private key material yields a public-only key."""
    idp.extra_entries.append(rsa_key("leaky").as_dict(private=True))
    cache = make_cache(idp.discovery_url, http, clock)
    key = await cache.get_key("leaky")
    assert not key.is_private
    assert "d" not in key.as_dict()


async def test_cached_keys_keep_working_while_the_provider_is_down(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With the server stopped, known kids still resolve (even past cache_seconds)."""
    idp = LocalIdP(keys=[rsa_key("k1")], clock=clock)
    with running_idp(idp):
        cache = make_cache(idp.discovery_url, http, clock)
        await cache.get_key("k1")
    clock.advance(3600)
    assert (await cache.get_key("k1")).kid == "k1"
    assert await cache.ready()


async def test_unknown_kid_while_the_provider_is_down_is_a_dependency_error(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """An unknown kid that cannot be checked is a 503, not a 401, also inside the cooldown."""
    idp = LocalIdP(keys=[rsa_key("k1")], clock=clock)
    with running_idp(idp):
        cache = make_cache(idp.discovery_url, http, clock)
        await cache.get_key("k1")
    clock.advance(30)
    with pytest.raises(DependencyUnavailable):
        await cache.get_key("new-kid")
    with pytest.raises(DependencyUnavailable):
        await cache.get_key("another-kid")


async def test_unreachable_provider_is_not_ready(http: httpx.AsyncClient, clock: FakeClock) -> None:
    """Without any key fetched and nothing listening, ready() is False and lookups are 503."""
    cache = make_cache(f"http://127.0.0.1:{free_port()}/realms/mro/x", http, clock)
    assert not await cache.ready()
    with pytest.raises(DependencyUnavailable):
        await cache.get_key("k1")


async def test_ready_fetches_keys(idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock) -> None:
    """ready() loads the key set when none is held yet."""
    cache = make_cache(idp.discovery_url, http, clock)
    assert await cache.ready()
    assert cache.kids == {"k1", "k2"}


async def test_provider_recovering_is_used_after_the_cooldown(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A failed fetch is retried once the cooldown has passed."""
    idp = LocalIdP(keys=[rsa_key("k1")], clock=clock, port=free_port())
    cache = make_cache(idp.discovery_url, http, clock)
    with pytest.raises(DependencyUnavailable):
        await cache.get_key("k1")
    with running_idp(idp):
        with pytest.raises(DependencyUnavailable):
            await cache.get_key("k1")
        assert idp.requests == []
        clock.advance(30)
        assert (await cache.get_key("k1")).kid == "k1"


async def test_discovery_without_jwks_uri_is_unavailable(clock: FakeClock) -> None:
    """A discovery document without an http(s) jwks_uri is treated as the provider being down."""
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"jwks_uri": "file:///x"}))
    async with httpx.AsyncClient(transport=transport) as client:
        cache = make_cache("http://idp.test/.well-known/openid-configuration", client, clock)
        with pytest.raises(DependencyUnavailable):
            await cache.get_key("k1")


class Withdrawals:
    """A listener recording each call's kids."""

    def __init__(self) -> None:
        self.calls: list[frozenset[str]] = []

    def __call__(self, kids: frozenset[str]) -> None:
        self.calls.append(kids)


async def test_refetch_tells_listeners_which_kids_were_withdrawn(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A refetch that no longer finds a key names its kid; added or kept keys are not named."""
    cache = make_cache(idp.discovery_url, http, clock)
    withdrawn = Withdrawals()
    cache.on_keys_withdrawn(withdrawn)
    await cache.get_key("k1")
    idp.keys.append(rsa_key("k3"))
    clock.advance(600)
    await cache.get_key("k1")
    assert withdrawn.calls == []
    del idp.keys[1]
    clock.advance(600)
    await cache.get_key("k1")
    assert withdrawn.calls == [frozenset({"k2"})]


async def test_other_key_material_under_a_kept_kid_counts_as_withdrawn(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A kid republished with another key is withdrawn: what its old key vouched for is void."""
    cache = make_cache(idp.discovery_url, http, clock)
    withdrawn = Withdrawals()
    cache.on_keys_withdrawn(withdrawn)
    await cache.get_key("k1")
    idp.keys[0] = rsa_key("k1")
    clock.advance(30)
    with pytest.raises(AuthenticationError):
        await cache.get_key("forged")
    assert withdrawn.calls == [frozenset({"k1"})]
    assert (await cache.get_key("k1")).thumbprint() == idp.keys[0].thumbprint()


async def test_a_failing_listener_neither_fails_the_fetch_nor_silences_the_others(
    idp: LocalIdP, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A listener that raises is logged; the new key set is in place and later listeners run."""

    def broken(kids: frozenset[str]) -> None:
        raise RuntimeError(f"cannot forget {sorted(kids)}")

    cache = make_cache(idp.discovery_url, http, clock)
    withdrawn = Withdrawals()
    cache.on_keys_withdrawn(broken)
    cache.on_keys_withdrawn(withdrawn)
    await cache.get_key("k1")
    del idp.keys[0]
    clock.advance(600)
    with pytest.raises(AuthenticationError) as info:
        await cache.get_key("k1")
    assert info.value.code == "unknown_kid"
    assert withdrawn.calls == [frozenset({"k1"})]
    assert cache.kids == {"k2"}


async def test_a_failed_refetch_withdraws_nothing(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """While the provider is down the keys held stay, and no listener hears of a withdrawal."""
    idp = LocalIdP(keys=[rsa_key("k1")], clock=clock)
    withdrawn = Withdrawals()
    with running_idp(idp):
        cache = make_cache(idp.discovery_url, http, clock)
        cache.on_keys_withdrawn(withdrawn)
        await cache.get_key("k1")
    clock.advance(600)
    await cache.get_key("k1")
    assert withdrawn.calls == []
    assert cache.kids == {"k1"}


async def test_fresh_until_follows_the_last_successful_fetch(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Nothing is fresh before a fetch; a fetch is fresh for cache_seconds, a failed one no more."""
    idp = LocalIdP(keys=[rsa_key("k1")], clock=clock, port=free_port())
    cache = make_cache(idp.discovery_url, http, clock)
    assert cache.fresh_until == float("-inf")
    with running_idp(idp):
        await cache.get_key("k1")
    fetched = clock()
    assert cache.fresh_until == fetched + 600
    clock.advance(600)
    await cache.get_key("k1")
    assert cache.fresh_until == fetched + 600
