"""Verifying the gateway's identity assertion: signature first, then claims, then the principal."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from orchestrator.errors import AuthenticationError
from orchestrator.identity import MAX_ASSERTION_BYTES, AssertionVerifier, Principal
from orchestrator.jwks import StaticKeySource
from tests.fixtures.orchestrator import AssertionSigner, FakeClock, handmade_token


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def signer(clock: FakeClock) -> AssertionSigner:
    return AssertionSigner(clock=clock)


@pytest.fixture
def verifier(signer: AssertionSigner, clock: FakeClock) -> AssertionVerifier:
    return AssertionVerifier(
        StaticKeySource(signer.jwks()),
        issuer="mro-gateway",
        audience="mro-orchestrator",
        leeway_seconds=30,
        clock=clock,
    )


async def rejected(verifier: AssertionVerifier, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        await verifier.verify(token)
    return caught.value


async def test_valid_assertion_gives_the_principal(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """A valid assertion yields sub, names, roles, permissions, auth method, sid and rid."""
    token = signer.sign("u-42", role="engineer", name="Eve Engineer", rid="req-123456789")
    principal = await verifier.verify(token)
    assert principal.sub == "u-42"
    assert (principal.username, principal.name, principal.display_name) == (
        "u-42",
        "Eve Engineer",
        "Eve Engineer",
    )
    assert principal.roles == {"engineer"}
    assert principal.has("agents:use:planning")
    assert not principal.has("conversations:read:all")
    assert (principal.auth, principal.sid, principal.rid) == ("jwt", "session-1", "req-123456789")


async def test_service_assertion_without_names_or_session(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """A service's assertion may lack names and sid; its display name is the subject."""
    token = signer.sign(
        "apikey:k1", role="service", name="", preferred_username=None, sid=None, auth="api_key"
    )
    principal = await verifier.verify(token)
    assert (principal.display_name, principal.sid, principal.auth) == ("apikey:k1", None, "api_key")


async def test_assertion_without_roles_or_permissions_has_none(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """Missing roles and permissions claims mean no roles and no permissions, not an error."""
    claims = {k: v for k, v in signer.claims().items() if k not in ("roles", "permissions")}
    token = jwt.encode({"alg": "ES256", "kid": signer.kid}, claims, signer.key)
    principal = await verifier.verify(token)
    assert (principal.roles, principal.permissions) == (frozenset(), frozenset())


async def test_expiry_allows_the_leeway_and_no_more(
    verifier: AssertionVerifier, signer: AssertionSigner, clock: FakeClock
) -> None:
    """An assertion is accepted up to 30 s after exp and rejected as expired after that."""
    token = signer.sign()
    clock.advance(60 + 29)
    assert (await verifier.verify(token)).sub == "user-1"
    clock.advance(2)
    assert (await rejected(verifier, token)).code == "expired_assertion"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "someone-else"}, "aud"),
        ({"aud": ["someone-else", "another"]}, "aud"),
        ({"iss": "evil-gateway"}, "iss"),
        ({"nbf": 1_900_000_000 + 31}, "nbf"),
        ({"iat": 1_900_000_000 + 31}, "iat"),
        ({"exp": None}, "exp"),
        ({"nbf": None}, "nbf"),
        ({"iat": None}, "iat"),
        ({"sub": None}, "sub"),
        ({"iss": None}, "iss"),
        ({"aud": None}, "aud"),
        ({"roles": "admin"}, "roles"),
        ({"permissions": ["ok", 1]}, "permissions"),
        ({"auth": "magic"}, "auth"),
        ({"auth": None}, "auth"),
        ({"name": 7}, "name"),
        ({"sid": ["x"]}, "sid"),
    ],
)
async def test_bad_claims_are_rejected(
    verifier: AssertionVerifier, signer: AssertionSigner, claims: dict[str, Any], why: str
) -> None:
    """Wrong audience or issuer, future nbf/iat, missing or mistyped claims: 401."""
    error = await rejected(verifier, signer.sign(**claims))
    assert error.code == "invalid_assertion"
    assert why in error.detail


async def test_audience_list_containing_ours_is_accepted(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """An aud list that names the orchestrator is accepted."""
    principal = await verifier.verify(signer.sign(aud=["mro-orchestrator", "other"]))
    assert principal.sub == "user-1"


async def test_signature_by_another_key_with_our_kid_is_rejected(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """A token signed by a different key but naming the trusted kid fails the signature."""
    forger = ECKey.generate_key("P-256", parameters={"kid": signer.kid})
    error = await rejected(verifier, signer.sign(key=forger))
    assert "signature" in error.detail


async def test_unknown_kid_is_rejected(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """A kid the key set does not hold is unknown_key."""
    other = ECKey.generate_key("P-256", parameters={"kid": "other"})
    error = await rejected(verifier, signer.sign(key=other, header={"kid": "other"}))
    assert error.code == "unknown_key"


async def test_missing_kid_is_rejected(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """A token without a kid is refused before any key lookup."""
    token = jwt.encode({"alg": "ES256"}, signer.claims(), signer.key)
    assert "key id" in (await rejected(verifier, token)).detail


async def test_alg_none_is_rejected(verifier: AssertionVerifier, signer: AssertionSigner) -> None:
    """An unsigned token (alg none) is refused."""
    token = handmade_token({"alg": "none", "kid": signer.kid}, signer.claims())
    assert "algorithm" in (await rejected(verifier, token)).detail


async def test_hs256_with_public_key_as_secret_is_rejected(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """The algorithm-confusion attack (HS256 keyed with the public JWK) is refused."""
    secret = str(signer.jwks()["keys"][0]).encode()
    token = handmade_token(
        {"alg": "HS256", "kid": signer.kid}, signer.claims(), hs256_secret=secret
    )
    assert "algorithm" in (await rejected(verifier, token)).detail


async def test_algorithm_outside_the_allow_list_is_rejected(
    signer: AssertionSigner, clock: FakeClock
) -> None:
    """An RS256 token is refused when only ES256 is allowed, even with a trusted RSA key."""
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa"})
    verifier = AssertionVerifier(
        StaticKeySource({"keys": [rsa.as_dict(private=False)]}),
        issuer="mro-gateway",
        audience="mro-orchestrator",
        clock=clock,
    )
    token = jwt.encode({"alg": "RS256", "kid": "rsa"}, signer.claims(), rsa)
    assert "algorithm" in (await rejected(verifier, token)).detail


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "é.x.y", "x" * (MAX_ASSERTION_BYTES + 1)],
    ids=["empty", "one-part", "garbage", "non-ascii", "oversized"],
)
async def test_malformed_tokens_are_rejected(verifier: AssertionVerifier, token: str) -> None:
    """Tokens that are not compact JWS at all are refused as malformed."""
    assert (await rejected(verifier, token)).detail == "Malformed assertion"


async def test_tampered_payload_is_rejected(
    verifier: AssertionVerifier, signer: AssertionSigner
) -> None:
    """Swapping in another payload (say, more permissions) breaks the signature."""
    honest = signer.sign("u1", role="technician").split(".")
    greedy = signer.sign("u1", role="manager").split(".")
    forged = ".".join([honest[0], greedy[1], honest[2]])
    assert "signature" in (await rejected(verifier, forged)).detail


def test_principal_has_checks_exact_permission() -> None:
    """Principal.has matches whole permission names only."""
    principal = Principal(
        sub="s",
        username="",
        name="",
        roles=frozenset(),
        permissions=frozenset({"conversations:read:own"}),
        auth="jwt",
    )
    assert principal.has("conversations:read:own")
    assert not principal.has("conversations:read")
    assert principal.display_name == "s"
