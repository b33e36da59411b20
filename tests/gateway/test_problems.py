"""Errors as RFC 9457 problem documents."""

from __future__ import annotations

import json

from gateway.errors import AuthenticationError, RateLimited, UpstreamUnavailable
from gateway.problems import MethodNotAllowed, problem_headers, render


def test_body_has_the_rfc_members_and_a_stable_code() -> None:
    """type, title, status, detail, code and request_id are present."""
    body = json.loads(render(UpstreamUnavailable("down"), "rid"))
    assert body == {
        "type": "https://mro-gateway.dev/problems/upstream_unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "down",
        "code": "upstream_unavailable",
        "request_id": "rid",
    }


def test_each_error_brings_its_fields() -> None:
    """401 challenges, 429 says when to retry, 405 lists what is allowed."""
    assert problem_headers(AuthenticationError(code="token_expired")) == [
        ("www-authenticate", 'Bearer realm="mro", error="invalid_token"')
    ]
    assert ("retry-after", "7") in problem_headers(RateLimited(retry_after=7))
    assert problem_headers(MethodNotAllowed({"POST", "GET"})) == [("allow", "GET, POST")]
