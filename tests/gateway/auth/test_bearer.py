"""Bearer token verification: attacks and edge cases against real keys and a real JWKS server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

from devstack.procs import free_port
from gateway.auth.bearer import MAX_TOKEN_BYTES, BearerAuthenticator, RevocationCheck
from gateway.auth.jwks import JWKSCache, SigningKey
from gateway.errors import AuthenticationError
from gateway.identity import AuthMethod, Identity
from gateway.settings import GatewaySettings
from tests.gateway.keys import (
    FakeClock,
    LocalIdP,
    TokenFactory,
    compact,
    ec_key,
    hs256_token,
    rs256_token,
    rsa_key,
    running_idp,
)

CERTS = "/openid-connect/certs"
LEEWAY = 30


class CountingJWKS(JWKSCache):
    """A JWKS cache that counts key lookups (how often signature work starts)."""

    lookups = 0

    async def get_key(self, kid: str) -> SigningKey:
        self.lookups += 1
        return await super().get_key(kid)


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIdP]:
    with running_idp(LocalIdP(keys=[rsa_key("rsa-1"), ec_key("ec-1")], clock=FakeClock())) as r:
        yield r


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(idp: LocalIdP) -> GatewaySettings:
    return GatewaySettings(
        keycloak_url=idp.base_url, keycloak_realm="mro", jwt_leeway_seconds=LEEWAY
    )


@pytest.fixture
async def jwks(
    idp: LocalIdP, clock: FakeClock, settings: GatewaySettings
) -> AsyncIterator[CountingJWKS]:
    async with httpx.AsyncClient(timeout=2.0) as http:
        yield CountingJWKS(
            settings.discovery_url,
            http,
            cache_seconds=600,
            refetch_cooldown_seconds=30,
            clock=clock,
        )


@pytest.fixture
def auth(jwks: CountingJWKS, settings: GatewaySettings, clock: FakeClock) -> BearerAuthenticator:
    return BearerAuthenticator(jwks, settings, clock)


@pytest.fixture
def tokens(idp: LocalIdP, clock: FakeClock) -> TokenFactory:
    return TokenFactory(idp.keys[0], idp.issuer, clock)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def rejected(auth: BearerAuthenticator, token: str) -> str:
    """The error code authenticating token raises."""
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(bearer(token))
    return info.value.code


async def test_user_token_gives_a_jwt_identity(
    auth: BearerAuthenticator, tokens: TokenFactory, clock: FakeClock
) -> None:
    """A valid user access token maps to subject, roles, names, session and expiry."""
    identity = await auth.authenticate(bearer(tokens.token("user-42")))
    assert identity == Identity(
        subject="user-42",
        method=AuthMethod.JWT,
        roles=frozenset({"technician", "default-roles-mro"}),
        username="tech1",
        name="Tess Technician",
        email="tech1@example.org",
        session_id="session-1",
        expires_at=clock() + 300,
        issued_at=float(int(clock())),
    )


async def test_service_account_token_gives_client_credentials(
    auth: BearerAuthenticator, tokens: TokenFactory
) -> None:
    """A client-credentials token is a service identity carrying its client id."""
    identity = await auth.authenticate(bearer(tokens.service_token("mro-planning")))
    assert identity is not None
    assert identity.method is AuthMethod.CLIENT_CREDENTIALS
    assert identity.client_id == "mro-planning"
    assert identity.roles == {"service"}
    assert identity.session_id is None
    assert identity.is_service


@pytest.mark.parametrize(
    "overrides",
    [
        {"sid": "session-1"},  # a person's session: client_id alone proves nothing
        {"realm_access": {"roles": ["technician"]}},  # no service role
        {"client_id": None},  # no client id: only the client-credentials grant adds it
    ],
)
async def test_only_claims_keycloak_controls_make_a_service(
    auth: BearerAuthenticator, tokens: TokenFactory, overrides: dict[str, Any]
) -> None:
    """A service identity needs the grant's client id, no session and the service role,
    whatever the username says."""
    identity = await auth.authenticate(bearer(tokens.service_token("mro-x", **overrides)))
    assert identity is not None
    assert identity.method is AuthMethod.JWT
    assert identity.client_id is None


async def test_user_named_like_a_service_account_without_client_is_a_user(
    auth: BearerAuthenticator, tokens: TokenFactory
) -> None:
    """Only the service-account prefix together with a client id makes a service identity."""
    token = tokens.token(preferred_username="service-account-x", azp=None)
    identity = await auth.authenticate(bearer(token))
    assert identity is not None
    assert identity.method is AuthMethod.JWT
    assert identity.client_id is None


async def test_es256_token_is_accepted(
    auth: BearerAuthenticator, idp: LocalIdP, clock: FakeClock
) -> None:
    """Tokens signed with the provider's EC key verify too."""
    factory = TokenFactory(idp.keys[1], idp.issuer, clock, alg="ES256")
    identity = await auth.authenticate(bearer(factory.token("ec-user", aud="mro-gateway")))
    assert identity is not None
    assert identity.subject == "ec-user"


async def test_ps256_token_is_accepted(
    auth: BearerAuthenticator, idp: LocalIdP, clock: FakeClock
) -> None:
    """RSA-PSS signatures from the same RSA key verify (PS256 is on the default allow-list)."""
    factory = TokenFactory(idp.keys[0], idp.issuer, clock, alg="PS256")
    identity = await auth.authenticate(bearer(factory.token("pss-user")))
    assert identity is not None
    assert identity.subject == "pss-user"


@pytest.mark.parametrize("alg", ["HS384", "HS512", "EdDSA", "RS1", ""])
async def test_other_algorithms_are_refused(
    auth: BearerAuthenticator, jwks: CountingJWKS, tokens: TokenFactory, alg: str
) -> None:
    """Symmetric, deprecated and unknown algorithms are refused before any key lookup."""
    token = compact({"alg": alg, "kid": "rsa-1"}, tokens.claims(), b"sig")
    assert await rejected(auth, token) == "token_algorithm"
    assert jwks.lookups == 0


async def test_no_authorization_header_is_no_credential(auth: BearerAuthenticator) -> None:
    """Without an Authorization header the authenticator steps aside."""
    assert await auth.authenticate({"X-API-Key": "x"}) is None


async def test_an_api_key_as_bearer_token_is_left_to_the_key_authenticator(
    auth: BearerAuthenticator,
) -> None:
    """``Bearer mro_…`` is an API key, not a JWT: this authenticator steps aside."""
    assert await auth.authenticate({"authorization": "Bearer mro_abc_def"}) is None


async def test_a_bearer_value_that_is_neither_says_how_to_send_a_key(
    auth: BearerAuthenticator,
) -> None:
    """Something that is no JWS and no key is refused with a detail naming both forms."""
    with pytest.raises(AuthenticationError) as refused:
        await auth.authenticate({"authorization": "Bearer sk-not-ours"})
    assert refused.value.code == "token_malformed"
    assert "Authorization: Bearer mro_" in str(refused.value)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("Basic dXNlcjpwYXNz", "unsupported_scheme"),
        ("", "unsupported_scheme"),
        ("Bearer", "token_malformed"),
        ("Bearer a.b", "token_malformed"),
        ("Bearer !!!.e30.e30", "token_malformed"),
        ("Bearer W10.e30.e30", "token_malformed"),
    ],
)
async def test_malformed_authorization_is_refused(
    auth: BearerAuthenticator, value: str, code: str
) -> None:
    """Other schemes, empty tokens and undecodable headers get stable codes."""
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate({"authorization": value})
    assert info.value.code == code


async def test_alg_none_is_refused_before_any_key_lookup(
    auth: BearerAuthenticator, jwks: CountingJWKS, tokens: TokenFactory
) -> None:
    """An unsigned token (alg none) never reaches the key set."""
    for alg in ("none", "None", "NONE"):
        token = compact({"alg": alg, "kid": "rsa-1"}, tokens.claims())
        assert await rejected(auth, token) == "token_algorithm"
    assert jwks.lookups == 0


@pytest.mark.parametrize("encoding", ["pem", "jwk-json"])
async def test_hs256_signed_with_the_public_key_is_refused(
    auth: BearerAuthenticator,
    jwks: CountingJWKS,
    idp: LocalIdP,
    tokens: TokenFactory,
    encoding: str,
) -> None:
    """The algorithm-confusion attack (HMAC keyed with the RSA public key) fails early."""
    public: RSAKey = idp.keys[0]  # type: ignore[assignment]
    secret = (
        public.as_pem(private=False)
        if encoding == "pem"
        else json.dumps(public.as_dict(private=False)).encode()
    )
    token = hs256_token({"alg": "HS256", "kid": "rsa-1"}, tokens.claims(), secret)
    assert await rejected(auth, token) == "token_algorithm"
    assert jwks.lookups == 0


async def test_algorithm_not_on_the_allow_list_is_refused(
    idp: LocalIdP, jwks: CountingJWKS, clock: FakeClock
) -> None:
    """An asymmetric algorithm the settings do not list is refused too."""
    settings = GatewaySettings(keycloak_url=idp.base_url, jwt_algorithms=["ES256"])
    auth = BearerAuthenticator(jwks, settings, clock)
    token = TokenFactory(idp.keys[0], idp.issuer, clock).token()
    assert await rejected(auth, token) == "token_algorithm"


def test_symmetric_only_allow_list_is_a_configuration_error(
    jwks: CountingJWKS, idp: LocalIdP
) -> None:
    """HS* in the settings is dropped; nothing left is an error at start-up."""
    settings = GatewaySettings(keycloak_url=idp.base_url, jwt_algorithms=["HS256", "none"])
    with pytest.raises(ValueError, match="asymmetric"):
        BearerAuthenticator(jwks, settings)


async def test_flipped_signature_byte_is_refused(
    auth: BearerAuthenticator, tokens: TokenFactory
) -> None:
    """Any change to the signature fails verification."""
    head, body, signature = tokens.token().split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert await rejected(auth, f"{head}.{body}.{flipped}") == "token_signature"


async def test_tampered_claims_are_refused(auth: BearerAuthenticator, tokens: TokenFactory) -> None:
    """Claims edited after signing (a role added) fail verification."""
    head, _, signature = tokens.token().split(".")
    forged = compact({}, tokens.claims(realm_access={"roles": ["admin"]})).split(".")[1]
    assert await rejected(auth, f"{head}.{forged}.{signature}") == "token_signature"


async def test_token_signed_by_another_key_with_a_real_kid_is_refused(
    auth: BearerAuthenticator, idp: LocalIdP, clock: FakeClock
) -> None:
    """An attacker's key cannot borrow the kid of a published key."""
    attacker = rsa_key("rsa-1")
    token = TokenFactory(attacker, idp.issuer, clock).token()
    assert await rejected(auth, token) == "token_signature"


async def test_algorithm_that_does_not_fit_the_key_is_refused(
    auth: BearerAuthenticator, idp: LocalIdP, clock: FakeClock
) -> None:
    """ES256 naming an RSA key's kid is refused (the key decides what it can verify)."""
    attacker = ec_key("rsa-1")
    token = TokenFactory(attacker, idp.issuer, clock, alg="ES256").token()
    assert await rejected(auth, token) == "token_algorithm"


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"iss": "http://evil.test/realms/mro"}, "token_issuer"),
        ({"iss": None}, "token_issuer"),
        ({"aud": "another-client"}, "token_audience"),
        ({"aud": ["account"], "azp": "mro-gateway"}, "token_audience"),
        ({"aud": None}, "token_audience"),
        ({"typ": "ID"}, "token_type"),
        ({"typ": "Refresh"}, "token_type"),
        ({"typ": None}, "token_type"),
        ({"sub": None}, "token_malformed"),
        ({"exp": "tomorrow"}, "token_malformed"),
    ],
)
async def test_claims_are_checked_after_the_signature(
    auth: BearerAuthenticator, tokens: TokenFactory, claims: dict[str, Any], code: str
) -> None:
    """Correctly signed tokens with a wrong issuer, audience or type are refused by claim."""
    assert await rejected(auth, tokens.token(**claims)) == code


async def test_single_string_audience_is_accepted(
    auth: BearerAuthenticator, tokens: TokenFactory
) -> None:
    """``aud`` may be a plain string equal to the gateway's audience."""
    assert await auth.authenticate(bearer(tokens.token(aud="mro-gateway"))) is not None


async def test_expiry_honours_the_leeway_edge(
    auth: BearerAuthenticator, tokens: TokenFactory, clock: FakeClock
) -> None:
    """A token is accepted until exp + leeway and refused from that second on."""
    token = tokens.token(exp=int(clock()) + 10)
    clock.advance(10 + LEEWAY - 1)
    assert await auth.authenticate(bearer(token)) is not None
    clock.advance(1)
    assert await rejected(auth, token) == "token_expired"


async def test_not_before_honours_the_leeway_edge(
    auth: BearerAuthenticator, tokens: TokenFactory, clock: FakeClock
) -> None:
    """nbf up to leeway in the future is accepted; one second more is not."""
    now = int(clock())
    assert await auth.authenticate(bearer(tokens.token(nbf=now + LEEWAY))) is not None
    assert await rejected(auth, tokens.token(nbf=now + LEEWAY + 1)) == "token_not_yet_valid"


async def test_issued_in_the_future_honours_the_leeway_edge(
    auth: BearerAuthenticator, tokens: TokenFactory, clock: FakeClock
) -> None:
    """iat up to leeway in the future is accepted; one second more is not."""
    now = int(clock())
    assert await auth.authenticate(bearer(tokens.token(iat=now + LEEWAY))) is not None
    assert await rejected(auth, tokens.token(iat=now + LEEWAY + 1)) == "token_issued_in_future"


async def test_unknown_kid_refetches_once(
    auth: BearerAuthenticator, idp: LocalIdP, tokens: TokenFactory, clock: FakeClock
) -> None:
    """A forged kid costs one JWKS refetch and is refused as unknown_kid."""
    await auth.authenticate(bearer(tokens.token()))
    before = idp.count(CERTS)
    clock.advance(30)
    forged = TokenFactory(rsa_key("forged"), idp.issuer, clock).token()
    assert await rejected(auth, forged) == "unknown_kid"
    assert await rejected(auth, forged) == "unknown_kid"
    assert idp.count(CERTS) == before + 1


@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c"])
async def test_key_carrying_headers_are_never_followed(
    auth: BearerAuthenticator, jwks: CountingJWKS, idp: LocalIdP, clock: FakeClock, member: str
) -> None:
    """A token naming its own key (URL or inline) is refused without fetching anything."""
    attacker = rsa_key("attacker")
    url = f"{idp.base_url}/attacker/{member}.json"
    values: dict[str, Any] = {
        "jku": url,
        "x5u": url,
        "jwk": attacker.as_dict(private=False),
        "x5c": ["MIIB"],
    }
    token = TokenFactory(attacker, idp.issuer, clock).sign(
        TokenFactory(attacker, idp.issuer, clock).claims(), **{member: values[member]}
    )
    assert await rejected(auth, token) == "token_header"
    assert idp.count(f"/attacker/{member}.json") == 0
    assert jwks.lookups == 0


async def test_unknown_critical_header_is_refused(
    auth: BearerAuthenticator, tokens: TokenFactory
) -> None:
    """A crit extension the gateway does not implement makes the token unacceptable."""
    header = {"alg": "RS256", "kid": "rsa-1", "crit": ["exp-ext"], "exp-ext": 1}
    assert isinstance(tokens.key, RSAKey)
    token = rs256_token(header, tokens.claims(), tokens.key)
    assert await rejected(auth, token) == "token_header"


async def test_non_json_payload_is_malformed(
    auth: BearerAuthenticator, tokens: TokenFactory
) -> None:
    """A correctly signed payload that is not a JSON object is refused as malformed."""
    token = jws.serialize_compact({"alg": "RS256", "kid": "rsa-1"}, b"[1, 2]", tokens.key)
    assert await rejected(auth, token) == "token_malformed"


async def test_oversize_token_is_refused_before_parsing(
    auth: BearerAuthenticator, jwks: CountingJWKS, tokens: TokenFactory
) -> None:
    """Tokens over 8 KiB are refused without decoding or key lookup."""
    token = tokens.token(padding="x" * MAX_TOKEN_BYTES)
    assert await rejected(auth, token) == "token_too_large"
    assert jwks.lookups == 0


async def test_verified_tokens_skip_signature_work_until_exp(
    auth: BearerAuthenticator, jwks: CountingJWKS, tokens: TokenFactory, clock: FakeClock
) -> None:
    """Repeats of a verified token are served from the cache, and stop working after exp."""
    token = tokens.token(exp=int(clock()) + 60)
    for _ in range(5):
        assert await auth.authenticate(bearer(token)) is not None
    assert jwks.lookups == 1
    clock.advance(60 + LEEWAY)
    assert await rejected(auth, token) == "token_expired"


async def test_token_cache_is_bounded(
    jwks: CountingJWKS, settings: GatewaySettings, tokens: TokenFactory, clock: FakeClock
) -> None:
    """The least recently used token is evicted when the cache is full."""
    auth = BearerAuthenticator(jwks, settings, clock, cache_size=2)
    first, second, third = (tokens.token(f"user-{n}") for n in range(3))
    for token in (first, second, third):
        await auth.authenticate(bearer(token))
    await auth.authenticate(bearer(third))
    assert jwks.lookups == 3
    await auth.authenticate(bearer(first))
    assert jwks.lookups == 4


async def test_revocation_hook_runs_on_every_request(
    jwks: CountingJWKS, settings: GatewaySettings, tokens: TokenFactory, clock: FakeClock
) -> None:
    """A revoked session's token is refused even when its verification is cached."""
    revoked_sids: set[str] = set()
    calls: list[str | None] = []

    async def is_revoked(identity: Identity) -> bool:
        calls.append(identity.session_id)
        return identity.session_id in revoked_sids

    check: RevocationCheck = is_revoked
    auth = BearerAuthenticator(jwks, settings, clock, revoked=check)
    token = tokens.token(sid="sid-9")
    assert await auth.authenticate(bearer(token)) is not None
    revoked_sids.add("sid-9")
    assert await rejected(auth, token) == "token_revoked"
    assert calls == ["sid-9", "sid-9"]
    assert jwks.lookups == 1


async def test_error_codes_do_not_leak_library_messages(
    auth: BearerAuthenticator, tokens: TokenFactory
) -> None:
    """The client-facing detail is the gateway's own text, not the JOSE library's."""
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(bearer(tokens.token(iss="http://evil.test")))
    assert "evil" not in info.value.detail
    assert info.value.__cause__ is None


@dataclass
class Rotating:
    """A provider of its own whose keys a test changes ("old", "new"), and a gateway on it."""

    idp: LocalIdP
    jwks: CountingJWKS
    auth: BearerAuthenticator

    def tokens(self, kid: str) -> TokenFactory:
        return self.idp.factory(next(k for k in self.idp.keys if k.kid == kid))

    def withdraw(self, kid: str) -> None:
        self.idp.keys[:] = [k for k in self.idp.keys if k.kid != kid]


@pytest.fixture
async def rotating(clock: FakeClock) -> AsyncIterator[Rotating]:
    idp = LocalIdP(keys=[rsa_key("old"), rsa_key("new")], clock=clock)
    with running_idp(idp):
        settings = GatewaySettings(
            keycloak_url=idp.base_url, keycloak_realm="mro", jwt_leeway_seconds=LEEWAY
        )
        async with httpx.AsyncClient(timeout=2.0) as http:
            jwks = CountingJWKS(
                settings.discovery_url,
                http,
                cache_seconds=600,
                refetch_cooldown_seconds=30,
                clock=clock,
            )
            yield Rotating(idp, jwks, BearerAuthenticator(jwks, settings, clock))


async def test_a_refetch_that_withdraws_a_key_ends_its_remembered_tokens(
    rotating: Rotating, clock: FakeClock
) -> None:
    """Once any request's refetch finds a key gone, tokens verified with it before are refused."""
    old = rotating.tokens("old").token("user-old")
    assert await rotating.auth.authenticate(bearer(old)) is not None
    rotating.withdraw("old")
    rotating.idp.keys.append(rsa_key("newer"))
    clock.advance(30)
    # Another caller's token names the rotated-in key: its refetch also finds "old" gone.
    assert await rotating.auth.authenticate(bearer(rotating.tokens("newer").token())) is not None
    assert rotating.idp.count(CERTS) == 2
    assert await rejected(rotating.auth, old) == "unknown_kid"


async def test_a_remembered_token_rechecks_its_key_when_the_key_set_is_due(
    rotating: Rotating, clock: FakeClock
) -> None:
    """With no other traffic, a repeat after the key cache time refetches and finds its key gone."""
    old = rotating.tokens("old").token("user-old", exp=int(clock()) + 3600)
    assert await rotating.auth.authenticate(bearer(old)) is not None
    rotating.withdraw("old")
    clock.advance(599)
    assert await rotating.auth.authenticate(bearer(old)) is not None
    assert rotating.idp.count(CERTS) == 1
    clock.advance(1)
    assert await rejected(rotating.auth, old) == "unknown_kid"
    assert rotating.idp.count(CERTS) == 2


async def test_remembered_tokens_of_kept_keys_survive_a_refetch(
    rotating: Rotating, clock: FakeClock
) -> None:
    """Withdrawing one key drops only its tokens; the others stay remembered (no new lookup)."""
    kept = rotating.tokens("new").token("user-new", exp=int(clock()) + 3600)
    old = rotating.tokens("old").token("user-old")
    for token in (kept, old):
        await rotating.auth.authenticate(bearer(token))
    rotating.withdraw("old")
    clock.advance(600)
    assert await rejected(rotating.auth, old) == "unknown_kid"
    lookups = rotating.jwks.lookups
    assert await rotating.auth.authenticate(bearer(kept)) is not None
    assert rotating.jwks.lookups == lookups


async def test_a_kid_republished_with_another_key_ends_its_remembered_tokens(
    rotating: Rotating, clock: FakeClock
) -> None:
    """A token verified by a key whose kid now names other key material must verify again, and
    fails its signature check."""
    old = rotating.tokens("old").token("user-old", exp=int(clock()) + 3600)
    assert await rotating.auth.authenticate(bearer(old)) is not None
    rotating.withdraw("old")
    rotating.idp.keys.append(rsa_key("old"))
    clock.advance(600)
    assert await rejected(rotating.auth, old) == "token_signature"


async def test_remembered_tokens_keep_working_while_the_provider_is_down(
    clock: FakeClock,
) -> None:
    """Past the key cache time with Keycloak unreachable, a remembered token is still served."""
    idp = LocalIdP(keys=[rsa_key("old")], clock=clock, port=free_port())
    settings = GatewaySettings(
        keycloak_url=idp.base_url, keycloak_realm="mro", jwt_leeway_seconds=LEEWAY
    )
    token = idp.factory().token("user-old", exp=int(clock()) + 3600)
    async with httpx.AsyncClient(timeout=2.0) as http:
        auth = BearerAuthenticator(
            JWKSCache(settings.discovery_url, http, cache_seconds=600, clock=clock), settings, clock
        )
        with running_idp(idp):
            assert await auth.authenticate(bearer(token)) is not None
        clock.advance(600)
        assert await auth.authenticate(bearer(token)) is not None


def test_ec_key_helper_makes_p256() -> None:
    """The EC test key is a P-256 key, which ES256 needs."""
    assert isinstance(ec_key(), ECKey)
    assert ec_key().curve_name == "P-256"


@pytest.fixture
async def keycloak_auth(keycloak_url: str) -> AsyncIterator[BearerAuthenticator]:
    settings = GatewaySettings(keycloak_url=keycloak_url, keycloak_realm="mro")
    async with httpx.AsyncClient(timeout=5.0) as http:
        jwks = JWKSCache(
            settings.discovery_url, http, cache_seconds=600, refetch_cooldown_seconds=30
        )
        yield BearerAuthenticator(jwks, settings)


@pytest.mark.keycloak
async def test_real_keycloak_user_token(
    keycloak_auth: BearerAuthenticator, user_tokens: Callable[[str], dict[str, Any]]
) -> None:
    """An engineer's access token from a real login maps to a JWT identity with expanded roles."""
    identity = await keycloak_auth.authenticate(bearer(user_tokens("eng1")["access_token"]))
    assert identity is not None
    assert identity.method is AuthMethod.JWT
    assert identity.username == "eng1"
    assert {"engineer", "technician"} <= identity.roles
    assert identity.session_id
    assert identity.client_id is None


@pytest.mark.keycloak
async def test_real_keycloak_id_and_refresh_tokens_are_refused(
    keycloak_auth: BearerAuthenticator, user_tokens: Callable[[str], dict[str, Any]]
) -> None:
    """Keycloak's ID token (typ ID) and refresh token (HS512, typ Refresh) are not access tokens."""
    tokens = user_tokens("tech1")
    assert await rejected(keycloak_auth, tokens["id_token"]) == "token_type"
    assert await rejected(keycloak_auth, tokens["refresh_token"]) == "token_algorithm"


@pytest.mark.keycloak
async def test_real_keycloak_service_token(
    keycloak_auth: BearerAuthenticator, service_tokens: Callable[[str], dict[str, Any]]
) -> None:
    """A client-credentials token of the planning sync client is a service identity."""
    token = service_tokens("mro-planning-sync")["access_token"]
    identity = await keycloak_auth.authenticate(bearer(token))
    assert identity is not None
    assert identity.method is AuthMethod.CLIENT_CREDENTIALS
    assert identity.client_id == "mro-planning-sync"
    assert "service" in identity.roles
