"""The identity assertion: claims, signature against the published JWKS, expiry, key rotation."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidKeyIdError
from joserfc.jwk import ECKey, KeySet
from pydantic import SecretStr

from gateway.assertion import AssertionSigner, generate_signing_key_pem
from gateway.identity import AuthMethod, Identity
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
    token = signer.sign(IDENTITY, "req-1")
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
        "rid": "req-1",
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
    decoded = jwt.decode(signer.sign(IDENTITY, "r"), KeySet.import_key_set(signer.jwks()))  # type: ignore[arg-type]
    assert decoded.header["alg"] == "ES256"
    assert decoded.header["kid"] == signer.kid == signer.jwks()["keys"][0]["kid"]


def test_every_assertion_has_its_own_jti(clock: FakeClock) -> None:
    """Two assertions for the same request differ by jti (replay detection downstream)."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    first = verify(signer.sign(IDENTITY, "r"), signer, clock)
    second = verify(signer.sign(IDENTITY, "r"), signer, clock)
    assert first["jti"] != second["jti"]


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
    claims = verify(signer.sign(identity, "r"), signer, clock)
    assert claims["auth"] == "api_key"
    assert "sid" not in claims


def test_assertion_expires_after_its_lifetime(clock: FakeClock) -> None:
    """Past exp plus the orchestrator's leeway the assertion is refused."""
    signer = AssertionSigner(
        [ECKey.generate_key("P-256")], "mro-gateway", "mro-orchestrator", 60, clock
    )
    token = signer.sign(IDENTITY, "r")
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
    verify(before.sign(IDENTITY, "r"), during, clock)
    after = AssertionSigner([new], "mro-gateway", "mro-orchestrator", 60, clock)
    with pytest.raises(InvalidKeyIdError):
        verify(before.sign(IDENTITY, "r"), after, clock)


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
    verify(signer.sign(IDENTITY, "r"), signer, clock)


def test_development_without_keys_gets_an_ephemeral_key(clock: FakeClock) -> None:
    """In development an unconfigured gateway generates a key at start."""
    settings = GatewaySettings(environment=Environment.DEVELOPMENT)
    signer = AssertionSigner.from_settings(settings, clock)
    verify(signer.sign(IDENTITY, "r"), signer, clock)


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
