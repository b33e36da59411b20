"""The request pipeline end to end (in process): routing, 401/403 order, problems, headers."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from tests.gateway.harness import (
    ListAuditSink,
    RecordingUpstream,
    in_process_app,
    running,
    settings_for,
)

pytestmark = pytest.mark.redis

TECH = {"Authorization": "Bearer tech-token"}
MANAGER = {"Authorization": "Bearer manager-token"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}


def _assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://mro-gateway.dev/problems/{code}"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_missing_credential_is_401_without_error_parameter(
    tmp_path: Path, redis_url: str
) -> None:
    """No credential: 401 with a bare Bearer challenge, even on a route the caller may not use."""
    app = in_process_app(tmp_path, redis_url, RecordingUpstream())
    async with running(app) as http:
        for path in ("/api/agents", "/api/admin/audit"):
            response = await http.get(path)
            _assert_problem(response, 401, "authentication_required")
            assert response.headers["www-authenticate"] == 'Bearer realm="mro"'


async def test_bad_token_is_401_invalid_token_and_audited(tmp_path: Path, redis_url: str) -> None:
    """A rejected token: 401 with error="invalid_token", and an auth.token_rejected event."""
    audit = ListAuditSink()
    app = in_process_app(tmp_path, redis_url, RecordingUpstream(), audit_sink=audit)
    async with running(app) as http:
        response = await http.get("/api/agents", headers={"Authorization": "Bearer forged"})
    _assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer realm="mro", error="invalid_token"'
    (event,) = audit.events
    assert (event.action, event.reason, event.client_ip) == (
        "auth.token_rejected",
        "invalid_token",
        "203.0.113.7",
    )
    assert "forged" not in repr(event)


async def test_missing_permission_is_403_never_401(tmp_path: Path, redis_url: str) -> None:
    """An authenticated caller without the route's permission gets 403, and it is audited."""
    audit = ListAuditSink()
    app = in_process_app(tmp_path, redis_url, RecordingUpstream(), audit_sink=audit)
    async with running(app) as http:
        denied = await http.get("/api/admin/audit", headers=TECH)
        allowed = await http.get("/api/admin/audit", headers=MANAGER)
    _assert_problem(denied, 403, "permission_denied")
    assert "www-authenticate" not in denied.headers
    assert allowed.status_code == 200
    assert audit.actions() == ["auth.permission_denied"]
    assert audit.events[0].actor == "tech-1"


async def test_unknown_path_is_404_and_wrong_method_is_405(tmp_path: Path, redis_url: str) -> None:
    """Routing happens before authentication: 404 for unknown paths, 405 with Allow."""
    upstream = RecordingUpstream()
    app = in_process_app(tmp_path, redis_url, upstream)
    async with running(app) as http:
        unknown = await http.get("/api/nothing-here")
        wrong = await http.put("/api/agents")
        trace = await http.request("TRACE", "/api/agents", headers=TECH)
    _assert_problem(unknown, 404, "not_found")
    _assert_problem(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET"
    _assert_problem(trace, 405, "method_not_allowed")
    assert upstream.received == []


async def test_every_error_is_problem_json(tmp_path: Path, redis_url: str) -> None:
    """Validation errors, oversize bodies and upstream failures share the problem shape."""
    settings = settings_for(tmp_path, redis_url=redis_url, max_body_bytes=100)
    app = in_process_app(tmp_path, redis_url, RecordingUpstream(), settings=settings)
    async with running(app) as http:
        invalid = await http.get("/api/admin/audit?limit=0", headers=MANAGER)
        too_big = await http.post("/api/conversations", headers=TECH, content=b"x" * 101)
        ambiguous = await http.get("/api/agents/%2e%2e", headers=TECH)
    _assert_problem(invalid, 422, "validation_failed")
    assert invalid.json()["errors"][0]["loc"] == ["query", "limit"]
    _assert_problem(too_big, 413, "payload_too_large")
    _assert_problem(ambiguous, 400, "ambiguous_path")


async def test_security_fields_on_success_and_error(tmp_path: Path, redis_url: str) -> None:
    """nosniff, no-referrer, DENY, CSP, no-store and HSTS (https public URL) on every answer."""
    app = in_process_app(tmp_path, redis_url, RecordingUpstream())
    async with running(app) as http:
        for response in (await http.get("/healthz"), await http.get("/api/agents")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["cache-control"] == "no-store"
            assert "default-src 'none'" in response.headers["content-security-policy"]
            assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_no_hsts_on_plain_http(tmp_path: Path, redis_url: str) -> None:
    """HSTS is only sent when the public URL is https."""
    settings = settings_for(tmp_path, redis_url=redis_url, public_url="http://127.0.0.1:8000")
    app = in_process_app(tmp_path, redis_url, RecordingUpstream(), settings=settings)
    async with running(app) as http:
        response = await http.get("/healthz")
    assert "strict-transport-security" not in response.headers


async def test_cors_allows_only_listed_origins(tmp_path: Path, redis_url: str) -> None:
    """Preflights from listed origins get 204; others 403; answers name only listed origins."""
    settings = settings_for(
        tmp_path, redis_url=redis_url, cors_allowed_origins=["https://app.example"]
    )
    app = in_process_app(tmp_path, redis_url, RecordingUpstream(), settings=settings)
    preflight = {"Access-Control-Request-Method": "POST"}
    async with running(app) as http:
        good = await http.options(
            "/api/conversations", headers={**preflight, "Origin": "https://app.example"}
        )
        bad = await http.options(
            "/api/conversations", headers={**preflight, "Origin": "https://evil.example"}
        )
        listed = await http.get("/api/agents", headers={**TECH, "Origin": "https://app.example"})
        other = await http.get("/api/agents", headers={**TECH, "Origin": "https://evil.example"})
    assert good.status_code == 204
    assert good.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in good.headers["access-control-allow-methods"]
    _assert_problem(bad, 403, "cors_denied")
    assert listed.headers["access-control-allow-origin"] == "https://app.example"
    exposed = {name.strip() for name in listed.headers["access-control-expose-headers"].split(",")}
    # Scripts of a listed origin may read the limits and the token-budget warning.
    assert {"ratelimit", "ratelimit-policy", "retry-after", "mro-budget-warning"} <= exposed
    assert "access-control-allow-origin" not in other.headers


# A token budget member: name, quota, window, quota unit "tokens" and the partition key.
TOKEN_POLICY_MEMBER = r'"tokens-[a-z]+-[a-z]+";q=\d+;w=\d+;qu="tokens";pk=:[A-Za-z0-9+/=]+:'


def _split_members(field: str) -> tuple[list[str], list[str]]:
    members = [member.strip() for member in field.split(",")]
    tokens = [member for member in members if member.startswith('"tokens-')]
    return [member for member in members if member not in tokens], tokens


async def test_ratelimit_fields_follow_the_draft(tmp_path: Path, redis_url: str) -> None:
    """RateLimit-Policy and RateLimit use structured-field syntax, one member per limit."""
    app = in_process_app(tmp_path, redis_url, RecordingUpstream())
    async with running(app) as http:
        plain = await http.get("/api/agents", headers=TECH)
        llm = await http.post("/api/conversations/c1/messages", headers=TECH, json={"content": "x"})
        public = await http.get("/healthz")
    assert plain.headers["ratelimit-policy"] == '"tier";q=120;w=60'
    assert plain.headers["ratelimit"] == '"tier";r=119;t=60'
    request_members, token_members = _split_members(llm.headers["ratelimit-policy"])
    assert request_members == ['"tier";q=120;w=60', '"llm";q=10;w=60']
    assert token_members, "an LLM route also declares its token budgets"
    assert all(re.fullmatch(TOKEN_POLICY_MEMBER, member) for member in token_members)
    assert llm.headers["ratelimit"].startswith('"tier";r=118;t=60, "llm";r=9;t=60')
    assert public.headers["ratelimit-policy"] == '"anonymous";q=300;w=60'


async def test_the_web_uis_files_are_not_rate_limited(tmp_path: Path, redis_url: str) -> None:
    """More asset requests from one address than the anonymous limit allows all succeed (the
    UI's files are static); the page itself is still limited per address."""
    app = in_process_app(tmp_path, redis_url, RecordingUpstream())
    async with running(app) as http:
        assets = [(await http.get("/app/app.css")).status_code for _ in range(310)]
        page = await http.get("/")
    assert assets == [200] * 310
    assert page.headers["ratelimit-policy"] == '"anonymous";q=300;w=60'


async def test_access_line_has_every_field_and_skips_the_caller_lookup(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One access record per request with its fields; built without walking the stack."""
    app = in_process_app(tmp_path, redis_url, RecordingUpstream())
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        async with running(app) as http:
            response = await http.get("/api/agents", headers=TECH)
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    fields = {k: getattr(record, k) for k in ("method", "route", "status", "client_ip", "sub")}
    assert fields == {
        "method": "GET",
        "route": "/api/agents",
        "status": 200,
        "client_ip": "203.0.113.7",
        "sub": "tech-1",
    }
    assert getattr(record, "request_id") == response.headers["x-request-id"]  # noqa: B009
    assert (record.getMessage(), record.levelno, record.funcName) == ("request", logging.INFO, None)


async def test_upstream_fields_are_kept_and_never_doubled(tmp_path: Path, redis_url: str) -> None:
    """Security and rate-limit fields are added once each, after the upstream's own fields."""
    app = in_process_app(tmp_path, redis_url, RecordingUpstream())
    async with running(app) as http:
        response = await http.get("/api/agents", headers=TECH)
    names = [name.lower() for name, _ in response.headers.raw]
    for name in (b"x-request-id", b"x-content-type-options", b"ratelimit", b"cache-control"):
        assert names.count(name) == 1, name
    assert names.index(b"content-type") < names.index(b"x-request-id")
