"""Token forgery and misuse against the running gateway: every bad bearer is a 401 that says why.

Each case sends one forged, tampered or misused token to ``GET /api/agents`` and checks the
problem document, the challenge, that the token is not echoed, and the ``auth.token_rejected``
audit record with the reason. Tokens with a valid realm signature come from Keycloak itself (the
realm's private key never leaves it): a look-alike issuer, a foreign audience, ID and refresh
tokens. Key-set fetches are counted on the lab gateway; claim edges are in test_token_claims.py.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from keycloak import KeycloakAdmin

from devstack.keycloak import admin_login, client_secret
from tests.gateway.harness import RecordingUpstream, serve
from tests.keycloak_flows import client_credentials_tokens
from tests.security.evidence import AuditReader, TokenSource, assert_problem, bearer, since
from tests.security.forge import (
    RealmKey,
    encode,
    flip_signature_byte,
    hmac_token,
    own_signed,
    split,
    with_claims,
)
from tests.security.lab import LabFactory

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]

PROTECTED = "/api/agents"


@dataclass(frozen=True)
class Issued:
    """Tokens Keycloak really issued, for misuse."""

    access: str  # a valid access token of the service account mro-planning-sync
    id_token: str
    refresh_token: str
    master_realm: str  # an access token of another realm (master)
    look_alike_issuer: str  # realm mro's signature, issuer spelt with another host name
    no_audience: str  # a client of realm mro without the gateway's audience
    foreign_audience: str  # a client whose tokens name a look-alike audience


@dataclass(frozen=True)
class Material:
    """What forgeries are built from."""

    realm: RealmKey
    attacker: RSAKey
    issued: Issued
    bait_url: str

    @property
    def claims(self) -> dict[str, Any]:
        return split(self.issued.access)[1]

    def own(self, **header: Any) -> str:
        """Signed with the attacker's key, naming the realm's kid unless header says otherwise."""
        return own_signed(
            self.attacker, {"typ": "JWT", "kid": self.realm.kid, **header}, self.claims
        )


def _throwaway_client(admin: KeycloakAdmin, audience: str | None) -> tuple[str, str, str]:
    """A client-credentials client of realm mro (optionally adding audience); id, secret, uuid."""
    client_id = f"sec-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_urlsafe(24)
    mappers = []
    if audience is not None:
        mappers.append(
            {
                "name": "look-alike audience",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {
                    "included.custom.audience": audience,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                },
            }
        )
    internal = admin.create_client(
        {
            "clientId": client_id,
            "secret": secret,
            "publicClient": False,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "protocolMappers": mappers,
        }
    )
    return client_id, secret, internal


@pytest.fixture(scope="module")
def issued(
    keycloak_url: str,
    keycloak_admin: KeycloakAdmin,
    service_tokens: TokenSource,
    user_tokens: TokenSource,
) -> Iterator[Issued]:
    """Real Keycloak tokens: valid, ID, refresh, other realm, look-alike issuer and audiences."""
    username, password = admin_login()
    master = _master_token(keycloak_url, username, password)
    planning_secret = client_secret("mro-planning-sync")
    look_alike = client_credentials_tokens(
        _other_spelling(keycloak_url), "mro-planning-sync", planning_secret
    )["access_token"]
    created = [
        _throwaway_client(keycloak_admin, None),
        _throwaway_client(keycloak_admin, "mro-gateway.evil"),
    ]
    try:
        no_aud, foreign = (
            client_credentials_tokens(keycloak_url, cid, secret)["access_token"]
            for cid, secret, _ in created
        )
        login = user_tokens("eng1")
        yield Issued(
            access=str(service_tokens("mro-planning-sync")["access_token"]),
            id_token=login["id_token"],
            refresh_token=login["refresh_token"],
            master_realm=master,
            look_alike_issuer=look_alike,
            no_audience=no_aud,
            foreign_audience=foreign,
        )
    finally:
        for _, _, internal in created:
            keycloak_admin.delete_client(internal)


def _other_spelling(url: str) -> str:
    """The same Keycloak under its other loopback name (Keycloak's development mode puts the
    name a request used into the tokens' ``iss``)."""
    parts = urlsplit(url)
    other = "localhost" if parts.hostname != "localhost" else "127.0.0.1"
    return parts._replace(netloc=f"{other}:{parts.port}").geturl()


def _master_token(keycloak_url: str, username: str, password: str) -> str:
    """An admin's access token of the master realm (another realm, other keys)."""
    with httpx.Client(timeout=30) as http:
        answer = http.post(
            f"{keycloak_url}/realms/master/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": username,
                "password": password,
            },
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def bait() -> Iterator[tuple[str, RecordingUpstream]]:
    """A server a forged header points at; the gateway must never fetch anything from it."""
    recorder = RecordingUpstream()
    with serve(recorder.app()) as url:
        yield url, recorder


@pytest.fixture(scope="module")
def material(
    realm: RealmKey,
    attacker_key: RSAKey,
    issued: Issued,
    bait: tuple[str, RecordingUpstream],
) -> Material:
    """Everything the forgeries are built from."""
    return Material(realm, attacker_key, issued, bait[0])


Forgery = Callable[[Material], str]

_NONE_SPELLINGS = ["none", "None", "NONE", "nOnE"]
_ENCODINGS = [
    "pem",
    "pem-without-newline",
    "der",
    "der-base64",
    "jwk-n",
    "jwk-n-bytes",
    "jwk-n.e",
    "jwk-json",
]


def _none(alg: str) -> Forgery:
    return lambda m: encode({"alg": alg, "typ": "JWT", "kid": m.realm.kid}, m.claims)


def _confused(alg: str, encoding: str) -> Forgery:
    return lambda m: hmac_token(
        alg, {"typ": "JWT", "kid": m.realm.kid}, m.claims, m.realm.encodings()[encoding]
    )


FORGERIES: list[tuple[str, Forgery, str]] = [
    *((f"alg-{alg}", _none(alg), "token_algorithm") for alg in _NONE_SPELLINGS),
    (
        "alg-none-keeping-signature",
        lambda m: ".".join(
            [
                *encode({"alg": "none", "kid": m.realm.kid}, m.claims).split(".")[:2],
                m.issued.access.split(".")[2],
            ]
        ),
        "token_algorithm",
    ),
    *((f"hs256-{e}", _confused("HS256", e), "token_algorithm") for e in _ENCODINGS),
    ("hs384-pem", _confused("HS384", "pem"), "token_algorithm"),
    ("hs512-der-base64", _confused("HS512", "der-base64"), "token_algorithm"),
    ("alg-eddsa", lambda m: m.own(alg="EdDSA"), "token_algorithm"),
    (
        "es256-on-the-rsa-key",
        lambda m: encode({"alg": "ES256", "kid": m.realm.kid}, m.claims, secrets.token_bytes(64)),
        "token_algorithm",
    ),
    ("flipped-signature-byte", lambda m: flip_signature_byte(m.issued.access), "token_signature"),
    (
        "claims-changed-signature-kept",
        lambda m: with_claims(m.issued.access, realm_access={"roles": ["admin"]}),
        "token_signature",
    ),
    ("own-key-realm-kid", lambda m: m.own(), "token_signature"),
    ("kid-path", lambda m: m.own(kid="../../../../../etc/passwd"), "unknown_kid"),
    ("kid-sql", lambda m: m.own(kid="' OR '1'='1' --"), "unknown_kid"),
    ("kid-nul", lambda m: m.own(kid="realm\u0000key"), "unknown_kid"),
    ("kid-url", lambda m: m.own(kid=m.bait_url + "/key.pem"), "unknown_kid"),
    ("kid-oversize", lambda m: m.own(kid="k" * 4000), "unknown_kid"),
    ("kid-not-a-string", lambda m: m.own(kid=["a", 1]), "token_malformed"),
    (
        "kid-of-the-encryption-key",
        lambda m: m.own(kid=m.realm.encryption_kid or "enc"),
        "unknown_kid",
    ),
    ("jku", lambda m: m.own(jku=m.bait_url + "/jwks.json"), "token_header"),
    ("x5u", lambda m: m.own(x5u=m.bait_url + "/cert.pem"), "token_header"),
    ("embedded-jwk", lambda m: m.own(jwk=m.attacker.as_dict(private=False)), "token_header"),
    ("embedded-x5c", lambda m: m.own(x5c=["MIIBfake"]), "token_header"),
    ("unknown-crit", lambda m: m.own(crit=["x-mro-policy"], **{"x-mro-policy": 1}), "token_header"),
    ("crit-exp", lambda m: m.own(crit=["exp"]), "token_header"),
    ("unencoded-payload", lambda m: m.own(b64=False, crit=["b64"]), "token_header"),
    ("other-realm", lambda m: m.issued.master_realm, "unknown_kid"),
    ("look-alike-issuer", lambda m: m.issued.look_alike_issuer, "token_issuer"),
    ("without-gateway-audience", lambda m: m.issued.no_audience, "token_audience"),
    ("look-alike-audience", lambda m: m.issued.foreign_audience, "token_audience"),
    ("id-token", lambda m: m.issued.id_token, "token_type"),
    ("refresh-token", lambda m: m.issued.refresh_token, "token_algorithm"),
    ("not-a-jws", lambda m: "a.b", "token_malformed"),
    (
        "header-not-json",
        lambda m: "bm90IGpzb24." + m.issued.access.split(".", 1)[1],
        "token_malformed",
    ),
    ("oversize-token", lambda m: m.issued.access + "A" * 9000, "token_too_large"),
]


def _rejected(
    gateway: httpx.Client,
    audit_reader: AuditReader,
    client_ip: str,
    headers: dict[str, str] | list[tuple[str, str]],
    code: str,
    secret: str,
) -> None:
    after = since()
    answer = gateway.get(PROTECTED, headers=headers)
    assert_problem(answer, 401, code)
    assert answer.headers["www-authenticate"] == 'Bearer realm="mro", error="invalid_token"'
    assert secret not in answer.text
    audit_reader.wait_for(
        "auth.token_rejected",
        after=after,
        where=lambda e: e["client_ip"] == client_ip and e["reason"] == code,
    )


def test_the_untampered_token_is_accepted(gateway: httpx.Client, material: Material) -> None:
    """The token the forgeries start from is valid, so each forgery fails for its own change."""
    answer = gateway.get(PROTECTED, headers=bearer(material.issued.access))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("forge", "code"), [(f, c) for _, f, c in FORGERIES], ids=[i for i, _, _ in FORGERIES]
)
def test_forged_or_misused_token_is_refused_and_audited(
    gateway: httpx.Client,
    audit_reader: AuditReader,
    client_ip: str,
    material: Material,
    forge: Forgery,
    code: str,
) -> None:
    """The gateway answers 401 problem+json with the reason's code and audits the rejection."""
    token = forge(material)
    _rejected(gateway, audit_reader, client_ip, bearer(token), code, token)


def test_urls_in_token_headers_are_never_fetched(
    bait: tuple[str, RecordingUpstream], material: Material, gateway: httpx.Client
) -> None:
    """``jku``, ``x5u`` and a ``kid`` holding a URL make the gateway fetch nothing."""
    for header in ({"jku": "/jwks.json"}, {"x5u": "/cert.pem"}, {"kid": "/key.pem"}):
        name, path = next(iter(header.items()))
        gateway.get(PROTECTED, headers=bearer(material.own(**{name: material.bait_url + path})))
    assert bait[1].received == []


def test_two_authorization_fields_are_refused(
    gateway: httpx.Client, audit_reader: AuditReader, client_ip: str, material: Material
) -> None:
    """A second Authorization field (which one is real?) is a 401, never a choice."""
    good = material.issued.access
    headers = [("Authorization", f"Bearer {good}"), ("Authorization", "Bearer other")]
    _rejected(gateway, audit_reader, client_ip, headers, "ambiguous_credentials", good)


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer"], ids=["basic", "token", "empty"]
)
def test_other_schemes_are_refused(
    gateway: httpx.Client, audit_reader: AuditReader, client_ip: str, value: str
) -> None:
    """Only the Bearer scheme authenticates; anything else is an audited 401."""
    code = "token_malformed" if value == "Bearer" else "unsupported_scheme"
    _rejected(gateway, audit_reader, client_ip, {"Authorization": value}, code, "dXNlcjpwYXNz")


@pytest.mark.parametrize("name", ["access_token", "token", "bearer"])
def test_token_in_the_query_string_does_not_authenticate(
    gateway: httpx.Client, material: Material, name: str
) -> None:
    """A valid token in ``?access_token=`` (or a look-alike name) is not a credential: 401."""
    answer = gateway.get(PROTECTED, params={name: material.issued.access})
    assert_problem(answer, 401, "authentication_required")
    assert answer.headers["www-authenticate"] == 'Bearer realm="mro"'


def test_token_in_a_form_body_does_not_authenticate(
    gateway: httpx.Client, material: Material
) -> None:
    """RFC 6750's form-body token is not accepted either."""
    answer = gateway.post("/api/conversations", data={"access_token": material.issued.access})
    assert_problem(answer, 401, "authentication_required")


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024], ids=["64KiB", "1MiB"])
def test_oversize_authorization_field_is_refused_before_parsing(
    gateway: httpx.Client, size: int
) -> None:
    """A huge Authorization field is refused (401 token_too_large, or 431) and nothing breaks."""
    answer = gateway.get(PROTECTED, headers={"Authorization": "Bearer " + "A" * size})
    assert answer.status_code in (401, 431), answer.status_code
    if answer.status_code == 401:
        assert_problem(answer, 401, "token_too_large")
    assert gateway.get("/healthz").status_code == 200


# --- Lab gateway: what reached the orchestrator, key-set fetches ----------------------------


def test_no_forged_token_reaches_the_orchestrator(
    lab_factory: LabFactory, material: Material, client_ip: str
) -> None:
    """Every forgery is refused before the proxy: the upstream receives nothing at all."""
    with (
        lab_factory(limits={"invalid_credentials": "1000/minute"}) as lab,
        lab.client(client_ip) as client,
    ):
        for name, forge, code in FORGERIES:
            answer = client.get(PROTECTED, headers=bearer(forge(material)))
            assert answer.status_code == 401, (name, answer.text)
            assert answer.json()["code"] == code, name
        assert lab.upstream.received == []
        rejected = [e.reason for e in lab.audit.actions("auth.token_rejected")]
        assert rejected == [code for _, _, code in FORGERIES]


def test_unknown_kid_flood_fetches_the_key_set_once_per_cooldown(
    lab_factory: LabFactory, material: Material, client_ip: str
) -> None:
    """Hundreds of unknown kids cost at most one JWKS fetch per cooldown, concurrent or not."""
    cooldown = 30
    with lab_factory(
        limits={"invalid_credentials": "10000/minute"}, jwks_refetch_cooldown_seconds=cooldown
    ) as lab:
        lab.clock.pin(lab.clock())

        def flood(count: int) -> list[int]:
            tokens = [material.own(kid=f"unknown-{uuid.uuid4().hex}") for _ in range(count)]
            with lab.client(client_ip) as client, ThreadPoolExecutor(max_workers=16) as pool:
                return list(
                    pool.map(lambda t: client.get(PROTECTED, headers=bearer(t)).status_code, tokens)
                )

        with lab.client(client_ip) as client:
            assert client.get(PROTECTED, headers=bearer(material.issued.access)).status_code == 200
        assert lab.jwks_fetches() == 1

        assert set(flood(150)) == {401}
        assert lab.jwks_fetches() == 1, "within the cooldown of the first fetch: no refetch"

        lab.clock.advance(cooldown + 1)
        assert set(flood(150)) == {401}
        assert lab.jwks_fetches() == 2, "one refetch for the whole flood after the cooldown"
        assert len(lab.upstream.received) == 1, "only the valid token's request"
