"""Drill: Keycloak's realm signing key rotates under a running gateway.

The only module that changes the shared realm's keys. The drill runs once (module fixture): it
adds a new ``rsa-generated`` key with a higher priority, so Keycloak signs with it at once, then
disables the original key; the gateway's clock is injected, so its key cache expires without
waiting. Whatever happens, the realm is put back as it was found: the original key enabled and
active with its original configuration, the drill's key deleted. No token minted while the new
key signs is ever cached beyond this module (tokens come from ``mint_service_token``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin

from tests.faults.evidence import bearer
from tests.faults.gateways import TokenMinter, in_process_gateway
from tests.gateway.harness import RecordingUpstream, running, settings_for
from tests.gateway.login_stack import CountingTransport, OffsetClock
from tests.keycloak_flows import REALM

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

KEY_PROVIDER = "org.keycloak.keys.KeyProvider"
JWKS_CACHE_SECONDS = 60
COOLDOWN_SECONDS = 30
CERTS = "/protocol/openid-connect/certs"
AGENTS = "/api/agents"


def header_kid(token: str) -> str:
    """The kid named in a compact JWS's header."""
    head = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


@dataclass
class RealmKeys:
    """The realm's RS256 signing key as found, and how to put it back."""

    admin: KeycloakAdmin
    original_kid: str
    original: dict[str, Any]
    added: list[str] = field(default_factory=list)

    @classmethod
    def found(cls, admin: KeycloakAdmin) -> RealmKeys:
        keys = admin.get_keys()
        kid = keys["active"]["RS256"]
        provider = next(k["providerId"] for k in keys["keys"] if k.get("kid") == kid)
        return cls(admin, kid, admin.get_component(provider))

    @property
    def priority(self) -> int:
        return int(self.original["config"].get("priority", ["0"])[0])

    def add_signing_key(self) -> str:
        """A new RS256 key that outranks the original; its kid."""
        component = self.admin.create_component(
            {
                "name": f"faults-rotation-{uuid.uuid4().hex[:8]}",
                "providerId": "rsa-generated",
                "providerType": KEY_PROVIDER,
                "parentId": self.admin.get_realm(REALM)["id"],
                "config": {"priority": [str(self.priority + 50)]},
            }
        )
        self.added.append(component)
        keys = self.admin.get_keys()["keys"]
        return str(next(k["kid"] for k in keys if k.get("providerId") == component))

    def disable_original(self) -> None:
        config = {**self.original["config"], "enabled": ["false"]}
        self.admin.update_component(self.original["id"], {**self.original, "config": config})

    def restore(self) -> None:
        """Original configuration back (a key set to [] is removed), drill keys deleted."""
        touched: dict[str, list[str]] = {"enabled": [], "active": []}
        config = {**touched, **self.original["config"]}
        self.admin.update_component(self.original["id"], {**self.original, "config": config})
        for component in self.added:
            self.admin.delete_component(component)
        self.added.clear()

    def active_kid(self) -> str:
        return str(self.admin.get_keys()["active"]["RS256"])


@dataclass
class Rotation:
    """What the gateway answered at each step of the rotation."""

    new_kid: str = ""
    new_token_kid: str = ""
    fetches_before: int = 0
    fetches_after_new_kid: int = 0
    fetches_after_repeat: int = 0
    status: dict[str, int] = field(default_factory=dict)
    restored_kid: str = ""
    original_kid: str = ""
    published_after_restore: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def realm_keys(keycloak_admin: KeycloakAdmin) -> Iterator[RealmKeys]:
    """The realm's keys as found; restored after the module whatever happened."""
    keys = RealmKeys.found(keycloak_admin)
    try:
        yield keys
    finally:
        keys.restore()


@pytest.fixture(scope="module")
async def rotation(
    realm_keys: RealmKeys,
    keycloak_url: str,
    redis_url: str,
    mint_service_token: TokenMinter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Rotation:
    """Runs the rotation against an in-process gateway once, recording every answer."""
    seen = Rotation(original_kid=realm_keys.original_kid)
    folder: Path = tmp_path_factory.mktemp("rotation")
    clock = OffsetClock()
    transport = CountingTransport()
    keycloak_http = httpx.AsyncClient(transport=transport, timeout=5.0)
    settings = settings_for(
        folder,
        keycloak_url=keycloak_url,
        redis_url=redis_url,
        jwks_cache_seconds=JWKS_CACHE_SECONDS,
        jwks_refetch_cooldown_seconds=COOLDOWN_SECONDS,
    )
    old = {name: mint_service_token(keycloak_url) for name in ("seen", "b", "c", "d")}
    app = in_process_gateway(
        settings, RecordingUpstream(), clock=clock, keycloak_http=keycloak_http
    )

    async def status(token: str) -> int:
        return (await http.get(AGENTS, headers=bearer(token))).status_code

    try:
        async with running(app) as http:
            seen.status["old before rotation"] = await status(old["seen"])
            seen.fetches_before = transport.count(CERTS)
            try:
                seen.new_kid = realm_keys.add_signing_key()
                new = mint_service_token(keycloak_url)
                seen.new_token_kid = header_kid(new)
                clock.advance(COOLDOWN_SECONDS + 1)
                seen.status["new, unknown kid"] = await status(new)
                seen.fetches_after_new_kid = transport.count(CERTS)
                seen.status["new again"] = await status(mint_service_token(keycloak_url))
                seen.fetches_after_repeat = transport.count(CERTS)
                seen.status["old while published"] = await status(old["b"])
                realm_keys.disable_original()
                seen.status["old within cache time"] = await status(old["c"])
                clock.advance(JWKS_CACHE_SECONDS + 1)
                seen.status["old after removal"] = await status(old["d"])
                seen.status["old verified before removal"] = await status(old["seen"])
                seen.status["new after removal"] = await status(new)
            finally:
                realm_keys.restore()
            seen.restored_kid = realm_keys.active_kid()
            published = await keycloak_http.get(f"{keycloak_url}/realms/{REALM}{CERTS}")
            seen.published_after_restore = [k["kid"] for k in published.json()["keys"]]
    finally:
        await keycloak_http.aclose()
    return seen


def test_new_key_tokens_are_accepted_after_one_key_set_fetch(rotation: Rotation) -> None:
    """A token signed by the new key (unknown kid) triggers exactly one fetch and is accepted."""
    assert rotation.new_token_kid == rotation.new_kid != rotation.original_kid
    assert rotation.status["new, unknown kid"] == 200
    assert rotation.status["new again"] == 200
    assert rotation.fetches_after_new_kid == rotation.fetches_before + 1
    assert rotation.fetches_after_repeat == rotation.fetches_after_new_kid


def test_old_key_tokens_work_while_the_old_key_is_published(rotation: Rotation) -> None:
    """Tokens of the previous key keep working while Keycloak publishes it, and for the key cache
    time after it was removed."""
    assert rotation.status["old before rotation"] == 200
    assert rotation.status["old while published"] == 200
    assert rotation.status["old within cache time"] == 200


def test_old_key_tokens_are_refused_once_removed_and_the_cache_expired(rotation: Rotation) -> None:
    """After the key cache time a token of the removed key is refused; new-key tokens pass."""
    assert rotation.status["old after removal"] == 401
    assert rotation.status["new after removal"] == 200


def test_a_token_verified_before_the_removal_is_refused_too(rotation: Rotation) -> None:
    """Removing a key also ends tokens this gateway verified with it before the removal."""
    assert rotation.status["old verified before removal"] == 401


def test_the_realm_keys_are_restored(rotation: Rotation) -> None:
    """After the drill the original key signs again and the drill's key is gone."""
    assert rotation.restored_kid == rotation.original_kid
    assert rotation.original_kid in rotation.published_after_restore
    assert rotation.new_kid not in rotation.published_after_restore
