"""Attacks on the request itself: ambiguous paths, request smuggling, oversize requests, slow
clients and methods without a rule.

Everything goes over bare sockets (``tests/security/wire.py``): HTTP clients would repair it.
What the orchestrator received is read from the lab gateway's recording upstream; statuses are
also checked against the running gateway, which runs the same server configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.live import LiveStack
from tests.security.evidence import LoopbackAddresses, assert_problem, bearer, client_from
from tests.security.lab import Lab
from tests.security.wire import Trickler, WireResponse, exchange, request_bytes

pytestmark = [pytest.mark.keycloak, pytest.mark.redis]


@pytest.fixture
def addresses_pool(addresses: LoopbackAddresses) -> list[str]:
    """Fifty source addresses for slow clients."""
    return [addresses.next() for _ in range(50)]


# --- Paths -----------------------------------------------------------------------------------

AMBIGUOUS_PATHS = {
    "dot-dot": "/api/conversations/../../api/admin/audit",
    "dot-dot-at-the-end": "/api/conversations/x/..",
    "dot": "/api/./agents",
    "encoded-dot-dot": "/api/conversations/%2e%2e/%2e%2e/api/admin/audit",
    "encoded-dot-dot-upper": "/api/conversations/%2E%2E/agents",
    "half-encoded-dot-dot": "/api/conversations/.%2e/agents",
    "double-encoded-dot-dot": "/api/conversations/%252e%252e/agents",
    "encoded-slash": "/api/conversations/x%2fmessages",
    "double-encoded-slash": "/api/conversations/x%252fmessages",
    "backslash": "/api/conversations\\..\\admin\\audit",
    "encoded-backslash": "/api/conversations/x%5c..%5cagents",
    "nul": "/api/conversations/x%00.json",
    "crlf": "/api/conversations/x%0d%0aX-Injected:%20yes",
    "double-slash-start": "//api/agents",
    "double-slash-inside": "/api//agents",
    "overlong-utf8-dot": "/api/conversations/%c0%ae%c0%ae/agents",
    "malformed-escape": "/api/conversations/%zz",
    "raw-non-ascii": "/api/conversations/caf\xe9",
}


def _send_path(base_url: str, path: str, token: str, source: str | None = None) -> WireResponse:
    request = request_bytes("GET", path, [("Authorization", f"Bearer {token}")])
    responses = exchange(base_url, request, source=source, quiet=0.5)
    assert len(responses) == 1, responses
    return responses[0]


def _assert_refused_path(response: WireResponse) -> None:
    assert response.status == 400, (response.status, response.body[:300])
    if response.header("x-request-id"):  # answered by the gateway, not by the HTTP parser
        assert response.header("content-type") == ["application/problem+json"]
        assert response.json()["code"] == "ambiguous_path"


@pytest.mark.parametrize("path", AMBIGUOUS_PATHS.values(), ids=AMBIGUOUS_PATHS.keys())
def test_ambiguous_path_is_refused_by_the_running_gateway(
    live_stack: LiveStack, client_ip: str, service_token: Callable[[], str], path: str
) -> None:
    """Traversal, encoded separators, NUL, CRLF, ``//`` and bad escapes: 400 before routing."""
    _assert_refused_path(_send_path(live_stack.gateway_url, path, service_token(), client_ip))


def test_no_ambiguous_path_reaches_the_orchestrator(
    lab: Lab, service_token: Callable[[], str], upstream_log: Callable[[], list[str]]
) -> None:
    """None of the ambiguous paths is forwarded, while a clean one is (the control)."""
    token = service_token()
    for path in AMBIGUOUS_PATHS.values():
        _assert_refused_path(_send_path(lab.url, path, token))
    assert upstream_log() == []
    assert _send_path(lab.url, "/api/agents", token).status == 200
    assert upstream_log() == ["/api/agents"]


# --- Request smuggling over bare sockets ------------------------------------------------------

SMUGGLED = b"GET /api/admin/audit HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def _smuggling(token: str) -> dict[str, bytes]:
    head = (
        "POST /api/conversations HTTP/1.1\r\nHost: gateway.test\r\n"
        f"Authorization: Bearer {token}\r\n"
    )
    chunked = b"3\r\nabc\r\n0\r\n\r\n"
    return {
        "cl-te": (head + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        + b"0\r\n\r\n"
        + SMUGGLED,
        "te-cl": (head + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n").encode()
        + b"%x\r\n" % len(SMUGGLED)
        + SMUGGLED
        + b"\r\n0\r\n\r\n",
        "duplicate-cl": (head + "Content-Length: 3\r\nContent-Length: 40\r\n\r\n").encode()
        + b"abc"
        + SMUGGLED,
        "cl-list": (head + "Content-Length: 3, 40\r\n\r\n").encode() + b"abc" + SMUGGLED,
        "cl-plus-sign": (head + "Content-Length: +3\r\n\r\n").encode() + b"abc" + SMUGGLED,
        "te-xchunked": (head + "Transfer-Encoding: xchunked\r\n\r\n").encode() + chunked + SMUGGLED,
        "te-space-before-colon": (head + "Transfer-Encoding : chunked\r\n\r\n").encode()
        + chunked
        + SMUGGLED,
        "te-chunked-identity": (head + "Transfer-Encoding: chunked, identity\r\n\r\n").encode()
        + chunked
        + SMUGGLED,
        "te-twice": (
            head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
        ).encode()
        + chunked
        + SMUGGLED,
        "te-folded": (head + "Transfer-Encoding:\r\n chunked\r\n\r\n").encode()
        + chunked
        + SMUGGLED,
        "bare-lf": (head.replace("\r\n", "\n") + "Transfer-Encoding: chunked\n\n").encode()
        + b"3\nabc\n0\n\n"
        + SMUGGLED,
        "chunk-size-overflow": (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
        + b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n"
        + SMUGGLED,
    }


SMUGGLING_CASES = list(_smuggling("t"))


@pytest.mark.parametrize("case", SMUGGLING_CASES)
def test_smuggling_shapes_are_refused_and_nothing_is_smuggled(
    lab: Lab, service_token: Callable[[], str], case: str
) -> None:
    """CL.TE, TE.CL, duplicate or odd Content-Length, obfuscated TE: 400, connection closed,
    and neither the request nor the smuggled one reaches the orchestrator."""
    start = len(lab.upstream.received)
    responses = exchange(lab.url, _smuggling(service_token())[case], quiet=0.5)
    assert [r.status for r in responses] == [400], [(r.status, r.body[:200]) for r in responses]
    assert lab.upstream.received[start:] == []


@pytest.mark.parametrize("case", ["cl-te", "te-cl", "duplicate-cl"])
def test_smuggling_shapes_are_refused_by_the_running_gateway(
    live_stack: LiveStack, client_ip: str, service_token: Callable[[], str], case: str
) -> None:
    """The running gateway answers the classic shapes with one 400 and nothing after it."""
    responses = exchange(
        live_stack.gateway_url, _smuggling(service_token())[case], source=client_ip, quiet=0.5
    )
    assert [r.status for r in responses] == [400]


ACCEPTED_CODINGS = {
    "plain": "Transfer-Encoding: chunked",
    "upper": "Transfer-Encoding: CHUNKED",
    "tab": "Transfer-Encoding:\tchunked",
}


@pytest.mark.parametrize("field", ACCEPTED_CODINGS.values(), ids=ACCEPTED_CODINGS.keys())
def test_accepted_chunked_bodies_are_reframed_exactly(
    lab: Lab, service_token: Callable[[], str], field: str
) -> None:
    """A chunked body the gateway accepts reaches the orchestrator as exactly that body, and a
    request pipelined behind it is answered as a request of its own (here: 401, no credential)."""
    head = (
        "POST /api/conversations HTTP/1.1\r\nHost: gateway.test\r\n"
        f"Authorization: Bearer {service_token()}\r\nContent-Type: application/json\r\n"
        f"{field}\r\n\r\n"
    ).encode()
    body = b'{"title": "framed"}'
    follow = b"GET /api/agents HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n"
    start = len(lab.upstream.received)
    responses = exchange(lab.url, head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n" + follow)
    assert [r.status for r in responses] == [200, 401]
    seen = lab.upstream.received[start:]
    assert [(r.method, r.path, r.body) for r in seen] == [("POST", "/api/conversations", body)]


# --- Oversize requests and slow clients -------------------------------------------------------


def test_oversize_body_is_refused_before_the_orchestrator(
    lab: Lab, service_token: Callable[[], str], upstream_log: Callable[[], list[str]]
) -> None:
    """A body over ``max_body_bytes`` is a 413 problem, declared or streamed."""
    limit = lab.settings.max_body_bytes
    with lab.client("127.0.0.1") as client:
        declared = client.post(
            "/api/conversations", content=b"x" * (limit + 1), headers=bearer(service_token())
        )
        assert_problem(declared, 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:
            for _ in range(limit // 65536 + 2):
                yield b"y" * 65536

        streamed = client.post(
            "/api/conversations", content=chunks(), headers=bearer(service_token())
        )
        assert_problem(streamed, 413, "payload_too_large")
    assert [r for r in lab.upstream.received if len(r.body) > limit] == []
    assert "/api/conversations" not in upstream_log()


def _assert_wire_problem(response: WireResponse, code: str) -> None:
    assert response.header("content-type") == ["application/problem+json"]
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([("X-Big", "a" * (1024 * 1024))], id="1MiB"),
        pytest.param([(f"X-Field-{i}", "b" * 100) for i in range(2000)], id="2000-fields"),
        pytest.param([(f"X-Field-{i}", "b") for i in range(101)], id="101-small-fields"),
    ],
)
def test_oversize_request_head_is_refused(
    lab: Lab,
    service_token: Callable[[], str],
    upstream_log: Callable[[], list[str]],
    fields: list[tuple[str, str]],
) -> None:
    """A request head of a megabyte or over 100 fields is refused (431 problem from the gateway,
    or 400 from a server that bounds heads itself), not proxied."""
    request = request_bytes("GET", "/api/agents", [*fields, *bearer(service_token()).items()])
    responses = exchange(lab.url, request, quiet=0.5)
    assert [r.status for r in responses] in ([431], [400]), [r.status for r in responses]
    if responses[0].status == 431:
        _assert_wire_problem(responses[0], "request_header_fields_too_large")
    assert upstream_log() == []


def test_a_head_within_the_limits_is_proxied(
    lab: Lab, service_token: Callable[[], str], upstream_log: Callable[[], list[str]]
) -> None:
    """The control: 90 fields and about 11 KiB of header bytes pass and reach the orchestrator."""
    fields = [(f"X-Field-{i}", "c" * 120) for i in range(90)]
    request = request_bytes("GET", "/api/agents", [*fields, *bearer(service_token()).items()])
    assert [r.status for r in exchange(lab.url, request, quiet=0.5)] == [200]
    assert upstream_log() == ["/api/agents"]


def test_slow_clients_trickling_headers_do_not_starve_others(
    live_stack: LiveStack, client_ip: str, addresses_pool: list[str]
) -> None:
    """While 50 connections send their heads a byte at a time, others are answered promptly."""
    tricklers = [Trickler(live_stack.gateway_url, source) for source in addresses_pool]
    try:
        slowest = 0.0
        with client_from(live_stack.gateway_url, client_ip) as client:
            for _ in range(15):
                for trickler in tricklers:
                    trickler.drip()
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.05)
        assert slowest < 1.0, f"a normal request took {slowest:.2f}s"
    finally:
        for trickler in tricklers:
            trickler.close()


# --- Methods ------------------------------------------------------------------------------


# Methods the HTTP parser knows reach the policy (405); others die in the parser (400).
METHODS = {"TRACE": 405, "PROPFIND": 405, "OPTIONS": 405, "PUT": 405, "PATCH": 405}
PARSER_UNKNOWN = {"TRACK": 400, "FOO": 400}


@pytest.mark.parametrize(
    ("method", "status"),
    [*METHODS.items(), *PARSER_UNKNOWN.items()],
    ids=[*METHODS, *PARSER_UNKNOWN],
)
def test_trace_and_unlisted_methods_are_refused_without_echo(
    live_stack: LiveStack,
    client_ip: str,
    service_token: Callable[[], str],
    method: str,
    status: int,
) -> None:
    """TRACE and any method without a rule answer 405 problem+json with Allow (or 400 from the
    HTTP parser for methods it does not know), echoing nothing that was sent."""
    token = service_token()
    request = request_bytes(
        method, "/api/agents", [("Authorization", f"Bearer {token}"), ("X-Echo", "marker-123")]
    )
    responses = exchange(live_stack.gateway_url, request, source=client_ip, quiet=0.5)
    assert [r.status for r in responses] == [status]
    response = responses[0]
    if status == 405:
        assert response.header("allow") == ["GET"]
        assert response.header("content-type") == ["application/problem+json"]
        assert response.json()["code"] == "method_not_allowed"
    assert b"marker-123" not in response.body
    assert token.encode() not in response.body


def test_unlisted_methods_never_reach_the_orchestrator(
    lab: Lab, service_token: Callable[[], str], upstream_log: Callable[[], list[str]]
) -> None:
    """No TRACE, TRACK or unknown method is forwarded."""
    for method, status in {**METHODS, **PARSER_UNKNOWN}.items():
        request = request_bytes(method, "/api/agents", list(bearer(service_token()).items()))
        assert [r.status for r in exchange(lab.url, request, quiet=0.5)] == [status], method
    assert upstream_log() == []
