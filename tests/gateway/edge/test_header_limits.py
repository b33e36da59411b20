"""Request-head limits: the rule itself, and the pipeline's 431 before anything else happens."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.edge.header_limits import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_FIELDS,
    HeaderFieldsTooLarge,
    HeaderLimits,
)
from tests.gateway.harness import (
    ListAuditSink,
    RecordingUpstream,
    in_process_app,
    raw_http,
    running,
    serve,
    settings_for,
)

TECH = {"Authorization": "Bearer tech-token"}
CODE = "request_header_fields_too_large"


def scope_with(fields: list[tuple[bytes, bytes]]) -> dict[str, object]:
    return {"type": "http", "headers": fields}


def fields_of_size(total: int) -> list[tuple[bytes, bytes]]:
    """One field whose name and value hold exactly total bytes."""
    return [(b"x-big", b"v" * (total - len(b"x-big")))]


def test_defaults_are_16_kib_and_100_fields() -> None:
    """Without configuration a head may carry 100 fields and 16 KiB of names and values."""
    limits = HeaderLimits()
    assert (limits.max_bytes, limits.max_fields) == (16 * 1024, 100)
    assert (DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_FIELDS) == (16 * 1024, 100)


def test_a_head_at_both_limits_passes() -> None:
    """Exactly max_fields fields and exactly max_bytes bytes are still accepted."""
    limits = HeaderLimits(max_bytes=1000, max_fields=4)
    limits.check(scope_with([(b"a", b"b")] * 4))
    limits.check(scope_with(fields_of_size(1000)))


def test_one_field_too_many_is_431() -> None:
    """max_fields + 1 fields, however small, are refused with 431."""
    limits = HeaderLimits(max_bytes=1000, max_fields=4)
    with pytest.raises(HeaderFieldsTooLarge) as refused:
        limits.check(scope_with([(b"a", b"b")] * 5))
    assert (refused.value.status, refused.value.code) == (431, CODE)
    assert "4 header fields" in refused.value.detail


def test_one_byte_too_many_is_431() -> None:
    """max_bytes + 1 bytes of names and values are refused, in one field or spread over many."""
    limits = HeaderLimits(max_bytes=1000, max_fields=100)
    with pytest.raises(HeaderFieldsTooLarge) as refused:
        limits.check(scope_with(fields_of_size(1001)))
    assert "1000 bytes" in refused.value.detail
    spread = [(b"x-f", b"v" * 97)] * 10 + [(b"x", b"")]  # 10 * 100 + 1
    with pytest.raises(HeaderFieldsTooLarge):
        limits.check(scope_with(spread))


@pytest.mark.parametrize(("max_bytes", "max_fields"), [(0, 100), (16384, 0), (-1, -1)])
def test_limits_must_be_positive(max_bytes: int, max_fields: int) -> None:
    """A zero or negative limit is a configuration error, not a gateway that refuses everything."""
    with pytest.raises(ValueError, match="positive"):
        HeaderLimits(max_bytes=max_bytes, max_fields=max_fields)


def _assert_431(response: httpx.Response) -> None:
    assert response.status_code == 431, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == CODE
    assert body["type"] == f"https://mro-gateway.dev/problems/{CODE}"
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"


def _refused_count(metrics: str) -> float:
    found = re.search(
        r'mro_gateway_requests_total\{method="GET",route="unmatched",status="431"\} (\S+)', metrics
    )
    return float(found.group(1)) if found else 0.0


@pytest.mark.redis
async def test_pipeline_refuses_oversize_heads_first(tmp_path: Path, redis_url: str) -> None:
    """Too many fields or too many bytes: 431 problem+json before authentication, nothing
    forwarded, counted in metrics and (like other framing refusals) not audited."""
    upstream = RecordingUpstream()
    audit = ListAuditSink()
    app = in_process_app(tmp_path, redis_url, upstream, audit_sink=audit)
    many = {f"x-field-{i}": "b" for i in range(DEFAULT_MAX_HEADER_FIELDS)}
    large = {"x-big": "a" * DEFAULT_MAX_HEADER_BYTES}
    async with running(app) as http:
        # No credential at all: a 401 would show the check ran after authentication.
        for fields in (many, large):
            _assert_431(await http.get("/api/agents", headers=fields))
        metrics = (await http.get("/metrics")).text
        control = await http.get("/api/agents", headers={**TECH, "x-small": "a" * 1000})
    assert _refused_count(metrics) == 2
    assert audit.actions() == []
    assert control.status_code == 200, control.text
    assert [r.path for r in upstream.received] == ["/api/agents"]


@pytest.mark.redis
def test_served_gateway_refuses_a_megabyte_field_it_was_handed(
    tmp_path: Path, redis_url: str
) -> None:
    """The server hands a 1 MiB field to the app; the pipeline answers 431 and forwards nothing."""
    upstream = RecordingUpstream()
    app = in_process_app(tmp_path, redis_url, upstream)
    request = (
        b"GET /api/agents HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer tech-token\r\n"
        b"X-Big: " + b"a" * (1024 * 1024) + b"\r\nConnection: close\r\n\r\n"
    )
    with serve(app) as url:
        status, body = raw_http(url, request)
    assert status == 431
    assert CODE.encode() in body
    assert upstream.received == []


@pytest.mark.redis
async def test_the_limits_come_from_the_gateway_settings(tmp_path: Path, redis_url: str) -> None:
    """MRO_GATEWAY_MAX_HEADER_FIELDS and _BYTES reach the pipeline: 431 above them, 200 within."""
    upstream = RecordingUpstream()
    settings = settings_for(
        tmp_path, redis_url=redis_url, max_header_fields=12, max_header_bytes=2_000
    )
    app = in_process_app(tmp_path, redis_url, upstream, settings=settings)
    async with running(app) as http:
        within = await http.get("/api/agents", headers=TECH)
        many = await http.get(
            "/api/agents", headers={**TECH, **{f"x-extra-{i}": "1" for i in range(12)}}
        )
        big = await http.get("/api/agents", headers={**TECH, "x-big": "v" * 2_000})
    assert within.status_code == 200
    assert (many.status_code, many.json()["code"]) == (431, CODE)
    assert (big.status_code, big.json()["code"]) == (431, CODE)
