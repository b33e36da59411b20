"""The identity assertion: claims, signature by the published keys, expiry, reuse, rotation."""

from __future__ import annotations

from dataclasses import replace

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidKeyIdError
from joserfc.jwk import ECKey, KeySet
from pydantic import SecretStr

from gateway.identity import AuthMethod, Identity
from gateway.proxy import assertion
from gateway.proxy.assertion import AssertionSigner, generate_signing_key_pem
from gateway.settings import Environment, GatewaySettings
from tests.gateway.keys import FakeClock, rsa_key

IDENTITY = Identity(
    subject="user-1",
    method=AuthMethod.JWT,
    roles=frozenset({"engineer", "technician"}),
    username="eng1",
    name="Erin Engineer",
    session_id="sid-1",
    permissions=frozenset({"agents:read", "messages:create"}),
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def verify(token: str, signer: AssertionSigner, clock: FakeClock) -> dict[str, object]:
    """Verify like the orchestrator: signature by the published keys, then iss/aud/exp/nbf."""
    keys = KeySet.import_key_set(signer.jwks())  # type: ignore[arg-type]
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    jwt.JWTClaimsRegistry(
        now=lambda: int(clock()),
        leeway=30,
        iss={"essential": True, "value": "mro-gateway"},
        aud={"essential": True, "value": "mro-orchestrator"},
        exp={"essential": True},
        nbf={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


def test_assertion_round_trips_with_the_published_keys(clock: FakeClock) -> None:
    """A signed assertion verifies against jwks() and carries every contract claim."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    token = signer.sign(IDENTITY)
    claims = verify(token, signer, clock)
    now = int(clock())
    assert {k: v for k, v in claims.items() if k != "jti"} == {
        "iss": "mro-gateway",
        "aud": "mro-orchestrator",
        "sub": "user-1",
        "name": "Erin Engineer",
        "preferred_username": "eng1",
        "roles": ["engineer", "technician"],
        "permissions": ["agents:read", "messages:create"],
        "auth": "jwt",
        "sid": "sid-1",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    assert isinstance(claims["jti"], str)
    assert claims["jti"]


def test_header_names_the_signing_key(clock: FakeClock) -> None:
    """The JWS header carries ES256 and the kid published in the JWKS."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    decoded = jwt.decode(signer.sign(IDENTITY), KeySet.import_key_set(signer.jwks()))  # type: ignore[arg-type]
    assert decoded.header["alg"] == "ES256"
    assert decoded.header["kid"] == signer.kid == signer.jwks()["keys"][0]["kid"]


def test_assertion_names_no_request(clock: FakeClock) -> None:
    """The request id is not signed in: one assertion can serve several requests."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    assert "rid" not in verify(signer.sign(IDENTITY), signer, clock)
    assert signer.sign(IDENTITY) == signer.sign(IDENTITY)


def test_assertion_is_reused_for_a_sixth_of_its_lifetime(clock: FakeClock) -> None:
    """Within 10 s of a 60 s lifetime the same identity gets the same token, then a new one."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    first = signer.sign(IDENTITY)
    clock.advance(9.9)
    assert signer.sign(IDENTITY) == first
    # Even the last reuse leaves the orchestrator 50 s of validity.
    assert verify(first, signer, clock)["exp"] - clock() >= 50  # type: ignore[operator]
    clock.advance(0.1)
    fresh = signer.sign(IDENTITY)
    assert fresh != first
    first_claims, fresh_claims = verify(first, signer, clock), verify(fresh, signer, clock)
    assert fresh_claims["iat"] == int(clock())
    assert fresh_claims["jti"] != first_claims["jti"]


def test_changed_identity_gets_a_new_assertion_at_once(clock: FakeClock) -> None:
    """Other permissions, roles or session mean other claims: no reuse across them."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    first = signer.sign(IDENTITY)
    fewer = IDENTITY.with_permissions(frozenset({"agents:read"}))
    claims = verify(signer.sign(fewer), signer, clock)
    assert claims["permissions"] == ["agents:read"]
    other_session = replace(IDENTITY, session_id="sid-2")
    assert verify(signer.sign(other_session), signer, clock)["sid"] == "sid-2"
    other_user = replace(IDENTITY, subject="user-2")
    assert verify(signer.sign(other_user), signer, clock)["sub"] == "user-2"
    assert signer.sign(IDENTITY) == first


def test_reuse_zero_signs_every_time(clock: FakeClock) -> None:
    """With reuse_seconds=0 every call signs a new assertion with its own jti."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock, 0
    )
    first = verify(signer.sign(IDENTITY), signer, clock)
    second = verify(signer.sign(IDENTITY), signer, clock)
    assert first["jti"] != second["jti"]


def test_clock_going_back_signs_anew(clock: FakeClock) -> None:
    """An assertion signed "in the future" (the clock was set back) is not reused."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    first = signer.sign(IDENTITY)
    clock.advance(-5)
    assert signer.sign(IDENTITY) != first


def test_reuse_is_bounded_by_half_the_lifetime() -> None:
    """Reusing an assertion for more than half its lifetime is refused at construction."""
    key = ECKey.generate_key("P-256")
    AssertionSigner([key], "i", "a", 60, reuse_seconds=30)
    with pytest.raises(ValueError, match="half the lifetime"):
        AssertionSigner([key], "i", "a", 60, reuse_seconds=31)
    with pytest.raises(ValueError, match="half the lifetime"):
        AssertionSigner([key], "i", "a", 60, reuse_seconds=-1)


def test_remembered_identities_are_bounded(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_CACHED identities the cache starts afresh instead of growing."""
    monkeypatch.setattr(assertion, "MAX_CACHED", 2)
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    first = signer.sign(IDENTITY)
    for subject in ("user-2", "user-3"):
        signer.sign(replace(IDENTITY, subject=subject))
    assert signer.sign(IDENTITY) != first


def test_service_assertion_has_no_session(clock: FakeClock) -> None:
    """An API-key identity asserts auth=api_key and carries no sid."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    identity = Identity(
        subject="apikey:abc",
        method=AuthMethod.API_KEY,
        roles=frozenset({"service"}),
        api_key_id="abc",
    )
    claims = verify(signer.sign(identity), signer, clock)
    assert claims["auth"] == "api_key"
    assert "sid" not in claims


def test_assertion_expires_after_its_lifetime(clock: FakeClock) -> None:
    """Past exp plus the orchestrator's leeway the assertion is refused."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    token = signer.sign(IDENTITY)
    clock.advance(60 + 29)
    verify(token, signer, clock)
    clock.advance(1)
    with pytest.raises(ExpiredTokenError):
        verify(token, signer, clock)


def test_rotation_signs_with_the_first_key_and_publishes_all(clock: FakeClock) -> None:
    """With two keys the first signs, both are published, and the old key's tokens still verify."""
    old, new = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    before = AssertionSigner([old], "mro-gateway", "mro-orchestrator", 60, clock)
    during = AssertionSigner([new, old], "mro-gateway", "mro-orchestrator", 60, clock)
    assert len(during.jwks()["keys"]) == 2
    assert during.kid != before.kid
    verify(before.sign(IDENTITY), during, clock)
    after = AssertionSigner([new], "mro-gateway", "mro-orchestrator", 60, clock)
    with pytest.raises(InvalidKeyIdError):
        verify(before.sign(IDENTITY), after, clock)


def test_jwks_publishes_no_private_material(clock: FakeClock) -> None:
    """The published keys are public EC keys marked for ES256 signatures."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    (published,) = signer.jwks()["keys"]
    assert "d" not in published
    assert (published["kty"], published["crv"], published["use"], published["alg"]) == (
        "EC",
        "P-256",
        "sig",
        "ES256",
    )


def test_foreign_key_cannot_forge_an_assertion(clock: FakeClock) -> None:
    """A token signed by another key with the same kid fails against the published keys."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    forger = ECKey.import_key(
        ECKey.generate_key("P-256").as_dict(private=True), {"kid": signer.kid}
    )
    token = jwt.encode({"alg": "ES256", "kid": signer.kid}, {"sub": "admin"}, forger)
    with pytest.raises(BadSignatureError):
        verify(token, signer, clock)


def test_keys_load_from_settings_pems(clock: FakeClock) -> None:
    """PEMs from the settings are used in order: the first one signs."""
    first, second = generate_signing_key_pem(), generate_signing_key_pem()
    settings = GatewaySettings(assertion_signing_keys=[SecretStr(first), SecretStr(second)])
    signer = AssertionSigner.from_settings(settings, clock)
    assert signer.kid == ECKey.import_key(first).thumbprint()
    assert len(signer.jwks()["keys"]) == 2
    verify(signer.sign(IDENTITY), signer, clock)


def test_development_without_keys_gets_an_ephemeral_key(clock: FakeClock) -> None:
    """In development an unconfigured gateway generates a key at start."""
    settings = GatewaySettings(environment=Environment.DEVELOPMENT)
    signer = AssertionSigner.from_settings(settings, clock)
    verify(signer.sign(IDENTITY), signer, clock)


def test_non_p256_keys_are_refused() -> None:
    """RSA keys, other curves and public-only keys cannot sign assertions."""
    with pytest.raises(ValueError, match="P-256"):
        AssertionSigner([ECKey.generate_key("P-384")], "i", "a")
    public_only = ECKey.import_key(ECKey.generate_key("P-256").as_dict(private=False))
    with pytest.raises(ValueError, match="P-256"):
        AssertionSigner([public_only], "i", "a")
    settings = GatewaySettings(
        assertion_signing_keys=[SecretStr(rsa_key().as_pem(private=True).decode())]
    )
    with pytest.raises(ValueError, match="PEM"):
        AssertionSigner.from_settings(settings)
    with pytest.raises(ValueError, match="at least one"):
        AssertionSigner([], "i", "a")


def test_generated_pem_is_a_private_p256_key() -> None:
    """The operator's key generator produces a PKCS#8 P-256 private key."""
    pem = generate_signing_key_pem()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    key = ECKey.import_key(pem)
    assert key.is_private
    assert key.curve_name == "P-256"


def test_reuse_comes_from_the_settings(clock: FakeClock) -> None:
    """MRO_GATEWAY_ASSERTION_REUSE_SECONDS=0 signs every request anew; 20 keeps one for 20 s."""
    fresh = AssertionSigner.from_settings(
        GatewaySettings(environment=Environment.DEVELOPMENT, assertion_reuse_seconds=0), clock
    )
    first = fresh.sign(IDENTITY)
    clock.advance(1)
    assert fresh.sign(IDENTITY) != first
    kept = AssertionSigner.from_settings(
        GatewaySettings(environment=Environment.DEVELOPMENT, assertion_reuse_seconds=20), clock
    )
    first = kept.sign(IDENTITY)
    clock.advance(19)
    assert kept.sign(IDENTITY) == first
    clock.advance(1)
    assert kept.sign(IDENTITY) != first
