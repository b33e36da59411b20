"""Header fields across the proxy: forged identity and forwarding fields, hop-by-hop fields and
method overrides never reach the orchestrator; its cookies, server names and attempts to
override the gateway's own fields never reach the client.

What the orchestrator received is read from the lab gateway's recording upstream.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fixtures.live import LiveStack
from tests.gateway.harness import UPSTREAM_SERVER
from tests.security.evidence import bearer, client_from
from tests.security.forge import split
from tests.security.lab import Lab
from tests.security.wire import exchange, request_bytes

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]


# --- Towards the orchestrator ------------------------------------------------------------------

FORGED_FIELDS: dict[str, list[tuple[str, str]]] = {
    "assertion": [("X-MRO-Assertion", "forged.assertion.value")],
    "assertion-twice": [("X-MRO-Assertion", "forged-1"), ("x-mro-assertion", "forged-2")],
    "mro-identity": [("X-Mro-Identity", "forged-admin")],
    "x-forwarded-for": [("X-Forwarded-For", "203.0.113.66, forged")],
    "x-forwarded-for-twice": [("X-Forwarded-For", "forged-1"), ("X-FORWARDED-FOR", "forged-2")],
    "x-forwarded-host": [("X-Forwarded-Host", "forged.example")],
    "x-forwarded-proto": [("X-Forwarded-Proto", "forged")],
    "x-forwarded-prefix": [("X-Forwarded-Prefix", "/forged")],
    "x-forwarded-user": [("X-Forwarded-User", "forged-admin")],
    "forwarded": [("Forwarded", 'for="forged";by=forged;host=forged.example')],
    "x-real-ip": [("X-Real-IP", "forged")],
    "x-client-ip": [("X-Client-IP", "forged")],
    "x-original-url": [("X-Original-URL", "/api/admin/forged")],
    "x-rewrite-url": [("X-Rewrite-URL", "/api/admin/forged")],
    "method-override": [("X-HTTP-Method-Override", "forged-DELETE")],
    "x-method-override": [("X-Method-Override", "forged-DELETE")],
    "x-user": [("X-User", "forged-admin")],
    "x-user-id": [("X-User-Id", "forged-admin")],
    "x-user-roles": [("X-User-Roles", "forged-admin")],
    "x-roles": [("X-Roles", "forged-admin")],
    "x-groups": [("X-Groups", "forged-admins")],
    "x-permissions": [("X-Permissions", "forged-audit:read")],
    "x-principal": [("X-Principal", "forged-admin")],
    "remote-user": [("Remote-User", "forged-admin")],
    "x-remote-user": [("X-Remote-User", "forged-admin")],
    "x-auth-request-user": [("X-Auth-Request-User", "forged-admin")],
    "x-authenticated-userid": [("X-Authenticated-Userid", "forged-admin")],
    "x-email": [("X-Email", "forged@example.org")],
    "x-request-id": [("X-Request-ID", "forged-request-id-0001")],
    "via": [("Via", "1.1 forged")],
    "cookie": [("Cookie", "session=forged")],
    "api-key": [("X-API-Key", "forged")],
    "proxy-authorization": [("Proxy-Authorization", "Basic forged")],
}
# Field names with "_" where the standard name has "-": dropped by nginx and merged into the
# standard name by CGI/WSGI servers (HTTP_X_FORWARDED_FOR), so they must not pass either.
UNDERSCORE_FIELDS: dict[str, list[tuple[str, str]]] = {
    "x_forwarded_for": [("X_Forwarded_For", "forged")],
    "x_mro_assertion": [("X_MRO_Assertion", "forged")],
    "remote_user": [("Remote_User", "forged-admin")],
}


def _forwarded(lab: Lab, fields: list[tuple[str, str]], token: str) -> httpx.Response:
    with lab.client("127.0.0.1") as client:
        return client.get("/api/agents", headers=[*fields, *bearer(token).items()])


@pytest.mark.parametrize(
    "fields",
    [
        *FORGED_FIELDS.values(),
        *UNDERSCORE_FIELDS.values(),
    ],
    ids=[*FORGED_FIELDS, *UNDERSCORE_FIELDS],
)
def test_client_sent_identity_and_forwarding_fields_never_reach_the_orchestrator(
    lab: Lab, service_token: Callable[[], str], fields: list[tuple[str, str]]
) -> None:
    """The orchestrator sees only the gateway's own assertion, address and request id."""
    token = service_token()
    answer = _forwarded(lab, fields, token)
    assert answer.status_code == 200, answer.text
    seen = lab.upstream.received[-1]
    leaked = [(name, value) for name, value in seen.headers if "forged" in value]
    assert leaked == []
    assert seen.header("x-forwarded-for") == ["127.0.0.1"]
    assert seen.header("x-request-id") == [answer.headers["x-request-id"]]
    assert seen.header("x-forwarded-host") == [lab.url.removeprefix("http://")]
    assertions = seen.header("x-mro-assertion")
    assert len(assertions) == 1
    header, claims, _ = split(assertions[0])
    assert header["alg"] == "ES256"
    assert claims["sub"] == split(token)[1]["sub"]
    assert "rid" not in claims  # the request id travels in X-Request-ID only


def test_method_override_does_not_change_the_method(
    lab: Lab, service_token: Callable[[], str]
) -> None:
    """``X-HTTP-Method-Override: DELETE`` on a POST reaches the orchestrator as a plain POST."""
    with lab.client("127.0.0.1") as client:
        answer = client.post(
            "/api/conversations",
            json={"title": "override"},
            headers={"X-HTTP-Method-Override": "DELETE", **bearer(service_token())},
        )
    assert answer.status_code == 200, answer.text
    seen = lab.upstream.received[-1]
    assert seen.method == "POST"
    assert seen.header("x-http-method-override") == []


HOP_BY_HOP = [
    ("Connection", "keep-alive, X-Hop-Secret, X-Forwarded-Trust"),
    ("X-Hop-Secret", "forged-hop"),
    ("X-Forwarded-Trust", "forged-trust"),
    ("Keep-Alive", "timeout=5, forged=1"),
    ("TE", "trailers, forged"),
    ("Trailer", "X-Forged-Trailer"),
    ("Proxy-Connection", "keep-alive, forged"),
    ("Upgrade", "forged/1"),
]


def test_hop_by_hop_fields_and_those_connection_names_are_dropped(
    lab: Lab, service_token: Callable[[], str]
) -> None:
    """Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-* and every field named in
    Connection stop at the gateway."""
    answer = _forwarded(lab, HOP_BY_HOP, service_token())
    assert answer.status_code == 200, answer.text
    seen = lab.upstream.received[-1]
    names = {name for name, _ in seen.headers}
    dropped = {name.lower() for name, _ in HOP_BY_HOP} - {"connection"}
    assert names & dropped == set()
    assert [v for _, v in seen.headers if "forged" in v] == []


def test_connection_cannot_strip_the_gateways_own_fields(
    lab: Lab, service_token: Callable[[], str]
) -> None:
    """Naming the assertion or X-Forwarded-For in Connection does not remove the gateway's."""
    fields = [("Connection", "X-MRO-Assertion, X-Forwarded-For, X-Request-ID")]
    answer = _forwarded(lab, fields, service_token())
    assert answer.status_code == 200
    seen = lab.upstream.received[-1]
    assert len(seen.header("x-mro-assertion")) == 1
    assert seen.header("x-forwarded-for") == ["127.0.0.1"]
    assert seen.header("x-request-id") == [answer.headers["x-request-id"]]


# --- Towards the client ----------------------------------------------------------------------


def test_upstream_cookies_and_server_fields_do_not_leak(
    lab: Lab, service_token: Callable[[], str]
) -> None:
    """Set-Cookie, Server, X-Powered-By and fields named in Connection stay behind the gateway,
    and the gateway's security fields are on the answer."""
    with lab.client("127.0.0.1") as client:
        answer = client.get("/api/agents", headers=bearer(service_token()))
    assert answer.status_code == 200
    assert answer.headers.get("x-upstream") == "yes"  # the upstream's answer did come through
    for name in ("set-cookie", "server", "x-powered-by", "x-secret-hop"):
        assert name not in answer.headers, name
    assert UPSTREAM_SERVER not in str(answer.headers)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_running_gateway_names_no_server_software(
    live_stack: LiveStack, client_ip: str, service_token: Callable[[], str]
) -> None:
    """Neither the gateway nor the orchestrator behind it announces its server software."""
    with client_from(live_stack.gateway_url, client_ip) as client:
        answers = [
            client.get("/healthz"),
            client.get("/api/agents", headers=bearer(service_token())),
            client.get("/no/such/path"),
        ]
    for answer in answers:
        assert "server" not in answer.headers, answer.headers
        assert "x-powered-by" not in answer.headers


def test_concurrent_clients_get_their_own_answers(
    lab: Lab, service_token: Callable[[], str]
) -> None:
    """Under concurrency every client gets the answer to its own request (no crossed responses)."""
    token = service_token()

    def one(n: int) -> str:
        answer = client.get(f"/api/conversations/c{n}", headers=bearer(token))
        return str(answer.json()["path"])

    with lab.client("127.0.0.1") as client, ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(one, range(40)))
    assert paths == [f"/api/conversations/c{n}" for n in range(40)]


def test_upstream_cannot_override_the_gateways_security_fields(
    lab: Lab, service_token: Callable[[], str]
) -> None:
    """The gateway owns CORS, framing, content policy and the request id of proxied answers."""
    request = request_bytes(
        "GET", "/api/conversations/hostile", list(bearer(service_token()).items())
    )
    (response,) = exchange(lab.url, request, quiet=0.5)
    assert response.status == 200
    assert response.header("access-control-allow-origin") == []
    assert response.header("access-control-allow-credentials") == []
    assert response.header("x-frame-options") == ["DENY"]
    assert "default-src *" not in response.header("content-security-policy")
    assert response.header("strict-transport-security") in (
        [],
        ["max-age=63072000; includeSubDomains"],
    )
    assert len(response.header("x-request-id")) == 1
    assert response.header("x-request-id") != ["upstream-chosen-id"]


def test_proxied_answer_carries_one_request_id(
    live_stack: LiveStack, client_ip: str, service_token: Callable[[], str]
) -> None:
    """A proxied answer of the running stack names exactly one request id."""
    request = request_bytes("GET", "/api/agents", list(bearer(service_token()).items()))
    (response,) = exchange(live_stack.gateway_url, request, source=client_ip, quiet=0.5)
    assert response.status == 200
    assert len(response.header("x-request-id")) == 1, response.header("x-request-id")
