"""Which header fields the proxy lets through, in each direction."""

from __future__ import annotations

from gateway.proxy.headers import forward_request_headers, forward_response_headers


def _raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in pairs]


def test_client_credentials_and_identity_claims_are_dropped() -> None:
    """Credentials and every client-sent identity field are removed, duplicates included."""
    kept = forward_request_headers(
        _raw(
            ("authorization", "Bearer x"),
            ("cookie", "a=b"),
            ("x-api-key", "mro_x"),
            ("x-user-id", "admin"),
            ("x-user-id", "admin2"),
            ("x-mro-assertion", "forged"),
            ("x-remote-user", "root"),
            ("x-forwarded-user", "root"),
            ("x-auth-request-email", "a@b"),
            ("x-roles", "admin"),
            ("x-user-groups", "admins"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-http-method-override", "DELETE"),
            ("accept", "application/json"),
            ("user-agent", "curl/8"),
            ("idempotency-key", "abc"),
        ),
        [("x-request-id", "rid")],
    )
    assert kept == [
        ("accept", "application/json"),
        ("user-agent", "curl/8"),
        ("idempotency-key", "abc"),
        ("x-request-id", "rid"),
    ]


def test_hop_by_hop_and_connection_named_fields_are_dropped() -> None:
    """Hop-by-hop fields and the fields that Connection names do not cross the proxy."""
    kept = forward_request_headers(
        _raw(
            ("connection", "keep-alive, X-Private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("content-type", "application/json"),
        ),
        [],
    )
    assert kept == [("content-type", "application/json")]


def test_response_fields_that_identify_or_set_state_are_dropped() -> None:
    """Set-Cookie, Server, X-Powered-By, an upstream challenge and hop-by-hop fields never
    reach the client."""
    kept = forward_response_headers(
        _raw(
            ("Set-Cookie", "s=1"),
            ("WWW-Authenticate", 'Bearer error="invalid_token"'),
            ("Server", "internal/1"),
            ("X-Powered-By", "x"),
            ("Connection", "X-Hop"),
            ("X-Hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "text/event-stream"),
        )
    )
    assert kept == [(b"content-type", b"text/event-stream")]
