"""The OpenID Connect client: URLs, grants and token verification, locally and against Keycloak."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack.keycloak import client_secret
from gateway.auth.jwks import JWKSCache
from gateway.browser.oidc import (
    BACKCHANNEL_LOGOUT_EVENT,
    AuthorizationRequest,
    GrantRejected,
    OidcClient,
    TokenInvalid,
)
from gateway.errors import DependencyUnavailable
from gateway.settings import GatewaySettings
from tests.gateway.keys import (
    FakeClock,
    LocalIdP,
    TokenFactory,
    compact,
    hs256_token,
    logout_claims,
    rsa_key,
    running_idp,
)
from tests.keycloak_flows import GATEWAY_CALLBACK, browser_client, form_action

CLIENT = "mro-gateway"
NONCE = "nonce-of-this-login"


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIdP]:
    with running_idp(LocalIdP(keys=[rsa_key("idp-1")], clock=FakeClock())) as running:
        yield running


@pytest.fixture
async def oidc(idp: LocalIdP) -> AsyncIterator[OidcClient]:
    settings = GatewaySettings(keycloak_url=idp.base_url, client_id=CLIENT)
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield OidcClient(
            settings,
            http,
            JWKSCache(settings.discovery_url, http, clock=idp.clock),
            clock=idp.clock,
        )


def id_claims(factory: TokenFactory, **overrides: Any) -> dict[str, Any]:
    now = int(factory.clock())
    claims: dict[str, Any] = {
        "iss": factory.issuer,
        "aud": CLIENT,
        "sub": "user-1",
        "typ": "ID",
        "azp": CLIENT,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "sid": "sid-1",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


async def reason(check: Callable[[], Any]) -> str:
    with pytest.raises(TokenInvalid) as raised:
        await check()
    return raised.value.reason


def test_authorization_request_uses_s256_of_a_long_verifier() -> None:
    """Each login gets fresh 256-bit state, nonce and verifier; the challenge is S256."""
    first, second = AuthorizationRequest.new(), AuthorizationRequest.new()
    assert len({first.state, first.nonce, first.code_verifier, second.state}) == 4
    assert len(first.code_verifier) >= 43
    digest = hashlib.sha256(first.code_verifier.encode()).digest()
    assert first.code_challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_a_valid_id_token_yields_its_claims(oidc: OidcClient, idp: LocalIdP) -> None:
    """Signature, issuer, audience, lifetime and nonce all fit: the claims come back."""
    factory = idp.factory()
    claims = await oidc.verify_id_token(factory.sign(id_claims(factory)), NONCE)
    assert claims["sub"] == "user-1"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"nonce": "another-login"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"aud": "another-client"}, "aud"),
        ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"),
        ({"iss": "http://evil.example/realms/mro"}, "iss"),
        ({"exp": 1_900_000_000 - 60}, "exp"),
        ({"iat": 1_900_000_000 + 600}, "iat"),
        ({"typ": "Bearer"}, "typ"),
        ({"sub": None}, "sub"),
    ],
)
async def test_id_tokens_failing_a_claim_check_are_refused(
    oidc: OidcClient, idp: LocalIdP, overrides: dict[str, Any], expected: str
) -> None:
    """Each claim rule of an ID token is enforced and named in the error."""
    idp.clock.now = 1_900_000_000
    factory = idp.factory()
    token = factory.sign(id_claims(factory, **overrides))
    assert await reason(lambda: oidc.verify_id_token(token, NONCE)) == expected


async def test_id_tokens_with_forged_signatures_or_headers_are_refused(
    oidc: OidcClient, idp: LocalIdP
) -> None:
    """Another key under a known kid, unknown kids, HS256, none and key-carrying headers fail."""
    factory = idp.factory()
    claims = id_claims(factory)
    impostor = TokenFactory(rsa_key("idp-1"), factory.issuer, factory.clock)
    stranger = TokenFactory(rsa_key("unknown"), factory.issuer, factory.clock)
    public = json.dumps(idp.keys[0].as_dict(private=False)).encode()
    cases = {
        "signature": impostor.sign(claims),
        "kid": stranger.sign(claims),
        "alg": hs256_token({"alg": "HS256", "kid": "idp-1"}, claims, public),
        "header": factory.sign(claims, jku="http://evil.example/keys"),
        "malformed": "not-a-token",
    }
    cases["none"] = compact({"alg": "none", "kid": "idp-1"}, claims)
    for expected, token in cases.items():
        got = await reason(lambda token=token: oidc.verify_id_token(token, NONCE))
        assert got == ("alg" if expected == "none" else expected)


async def test_a_valid_logout_token_yields_sid_sub_and_jti(oidc: OidcClient, idp: LocalIdP) -> None:
    """A Keycloak-shaped logout token verifies (typ logout+jwt header, typ Logout claim)."""
    factory = idp.factory()
    claims = logout_claims(factory, CLIENT)
    verified = await oidc.verify_logout_token(factory.sign(claims, typ="logout+jwt"))
    assert (verified.sid, verified.sub, verified.jti) == ("sid-1", "user-1", claims["jti"])


async def test_a_logout_token_with_only_a_subject_is_accepted(
    oidc: OidcClient, idp: LocalIdP
) -> None:
    """sid is optional when sub is there (and application/logout+jwt is a valid typ)."""
    factory = idp.factory()
    token = factory.sign(logout_claims(factory, CLIENT, sid=None), typ="application/logout+jwt")
    verified = await oidc.verify_logout_token(token)
    assert (verified.sid, verified.sub) == (None, "user-1")


@pytest.mark.parametrize(
    ("overrides", "header", "expected"),
    [
        ({"exp": 1_900_000_000 - 60}, {}, "exp"),
        ({"iat": 1_900_000_000 - 600, "exp": None}, {}, "iat"),
        ({"events": {BACKCHANNEL_LOGOUT_EVENT: "yes"}}, {}, "events"),
        ({"nonce": "n"}, {}, "nonce"),
        ({"aud": "another-client"}, {}, "aud"),
        ({"sid": "", "sub": None}, {}, "sid"),
        ({}, {"typ": "JWT"}, "typ"),
    ],
)
async def test_logout_tokens_breaking_a_rule_are_refused(
    oidc: OidcClient,
    idp: LocalIdP,
    overrides: dict[str, Any],
    header: dict[str, str],
    expected: str,
) -> None:
    """Each back-channel logout rule is enforced and named in the error."""
    idp.clock.now = 1_900_000_000
    factory = idp.factory()
    token = factory.sign(
        logout_claims(factory, CLIENT, **overrides), **({"typ": "logout+jwt"} | header)
    )
    assert await reason(lambda: oidc.verify_logout_token(token)) == expected


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> OidcClient:
    settings = GatewaySettings(
        keycloak_url="http://idp.test", client_id=CLIENT, client_secret="s3cret"
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return OidcClient(settings, http, JWKSCache(settings.discovery_url, http))


def _discovery(issuer: str = "http://idp.test/realms/mro") -> dict[str, str]:
    base = "http://idp.test/realms/mro/protocol/openid-connect"
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/auth",
        "token_endpoint": f"{base}/token",
        "end_session_endpoint": f"{base}/logout",
        "jwks_uri": f"{base}/certs",
    }


def _provider(token: Callable[[httpx.Request], httpx.Response]) -> OidcClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=_discovery())
        return token(request)

    return _client(handler)


async def test_a_discovery_document_of_another_issuer_is_refused() -> None:
    """Mix-up defence: discovery must name the configured issuer."""
    oidc = _client(lambda _: httpx.Response(200, json=_discovery("http://evil.example/realms/mro")))
    with pytest.raises(DependencyUnavailable):
        await oidc.metadata()


async def test_an_unreachable_provider_is_a_dependency_error() -> None:
    """Connection errors never leak: they become DependencyUnavailable."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(DependencyUnavailable):
        await _client(handler).metadata()


async def test_grants_authenticate_the_client_and_map_answers() -> None:
    """Basic client auth is sent; 400 invalid_grant is GrantRejected; 5xx and garbage are 503."""
    seen: list[httpx.Request] = []
    answers = iter(
        [
            httpx.Response(400, json={"error": "invalid_grant"}),
            httpx.Response(502, text="bad gateway"),
            httpx.Response(200, json={"token_type": "Bearer"}),
            httpx.Response(200, json={"access_token": "a", "expires_in": 300}),
        ]
    )

    def token(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    oidc = _provider(token)
    with pytest.raises(GrantRejected) as rejected:
        await oidc.refresh("r-1")
    assert rejected.value.error == "invalid_grant"
    for _ in range(2):
        with pytest.raises(DependencyUnavailable):
            await oidc.refresh("r-1")
    tokens = await oidc.exchange_code("code-1", "verifier-1", "http://gw.test/auth/callback")
    assert (tokens.access_token, tokens.expires_in, tokens.refresh_token) == ("a", 300, None)
    expected = "Basic " + base64.b64encode(f"{CLIENT}:s3cret".encode()).decode()
    assert {request.headers["authorization"] for request in seen} == {expected}
    form = parse_qs(seen[-1].content.decode())
    assert form["code_verifier"] == ["verifier-1"]
    assert "client_secret" not in form


async def test_end_session_url_carries_the_hint_and_return_uri() -> None:
    """RP-initiated logout names the client, the ID token hint and the post-logout URI."""
    oidc = _provider(lambda _: httpx.Response(404))
    url = await oidc.end_session_url("id-token", "http://gw.test/")
    assert url.startswith("http://idp.test/realms/mro/protocol/openid-connect/logout?")
    params = parse_qs(urlsplit(url).query)
    assert params == {
        "client_id": [CLIENT],
        "id_token_hint": ["id-token"],
        "post_logout_redirect_uri": ["http://gw.test/"],
    }
    registration = await oidc.authorization_url(
        AuthorizationRequest.new(), "http://gw.test/auth/callback", registration=True
    )
    assert urlsplit(registration).path.endswith("/protocol/openid-connect/registrations")


@pytest.fixture
async def keycloak_oidc(
    keycloak_url: str, dev_credentials: dict[str, Any]
) -> AsyncIterator[OidcClient]:
    settings = GatewaySettings(
        keycloak_url=keycloak_url,
        client_id=CLIENT,
        client_secret=client_secret(CLIENT, dev_credentials),
    )
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield OidcClient(settings, http, JWKSCache(settings.discovery_url, http))


def _code_from_login(url: str, username: str, password: str) -> str:
    """Drive Keycloak's login form for the authorization URL; the code it redirects with."""
    with browser_client() as browser:
        page = browser.get(url)
        assert page.status_code == 200
        answer = browser.post(
            form_action(page.text, "kc-form-login"),
            data={"username": username, "password": password},
        )
    location = answer.headers["location"]
    assert location.startswith(GATEWAY_CALLBACK)
    return parse_qs(urlsplit(location).query)["code"][0]


def _dev_user(dev_credentials: dict[str, Any]) -> tuple[str, str]:
    user = dev_credentials["users"][0]
    return user["username"], user["password"]


@pytest.mark.keycloak
async def test_keycloak_login_code_exchange_and_id_token(
    keycloak_oidc: OidcClient, dev_credentials: dict[str, Any]
) -> None:
    """A real login: the code with its verifier yields tokens whose ID token verifies."""
    login = AuthorizationRequest.new()
    url = await keycloak_oidc.authorization_url(login, GATEWAY_CALLBACK)
    code = _code_from_login(url, *_dev_user(dev_credentials))
    tokens = await keycloak_oidc.exchange_code(code, login.code_verifier, GATEWAY_CALLBACK)
    assert tokens.id_token is not None
    assert tokens.refresh_token is not None
    claims = await keycloak_oidc.verify_id_token(tokens.id_token, login.nonce)
    assert claims["aud"] == CLIENT
    assert claims["sid"]
    assert await reason(lambda: keycloak_oidc.verify_id_token(tokens.id_token or "", "x")) == (
        "nonce"
    )
    refreshed = await keycloak_oidc.refresh(tokens.refresh_token)
    assert refreshed.refresh_token not in (None, tokens.refresh_token)
    with pytest.raises(GrantRejected):
        await keycloak_oidc.refresh(tokens.refresh_token)  # rotated: the old one is spent


@pytest.mark.keycloak
async def test_keycloak_refuses_a_code_without_its_verifier(
    keycloak_oidc: OidcClient, dev_credentials: dict[str, Any]
) -> None:
    """PKCE S256 is required: the code is worthless with another verifier."""
    login = AuthorizationRequest.new()
    url = await keycloak_oidc.authorization_url(login, GATEWAY_CALLBACK)
    code = _code_from_login(url, *_dev_user(dev_credentials))
    with pytest.raises(GrantRejected) as rejected:
        await keycloak_oidc.exchange_code(
            code, AuthorizationRequest.new().code_verifier, GATEWAY_CALLBACK
        )
    assert rejected.value.error == "invalid_grant"


@pytest.mark.keycloak
async def test_keycloak_discovery_gives_the_endpoints(keycloak_oidc: OidcClient) -> None:
    """Keycloak's discovery document provides every endpoint the login needs."""
    metadata = await keycloak_oidc.metadata()
    assert metadata.authorization_endpoint.endswith("/protocol/openid-connect/auth")
    assert metadata.token_endpoint.endswith("/protocol/openid-connect/token")
    assert metadata.end_session_endpoint is not None
