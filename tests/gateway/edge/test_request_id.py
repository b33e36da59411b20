"""Request ids: a trusted proxy's well-formed id is kept, anything else is replaced."""

from __future__ import annotations

from gateway.edge.client_address import TrustedProxies
from gateway.edge.request_id import assign_request_id


def _scope(peer: str, request_id: bytes) -> dict[str, object]:
    return {"client": (peer, 1), "headers": [(b"x-request-id", request_id)]}


def test_trusted_proxy_id_is_kept() -> None:
    """A well-formed id from a trusted proxy is the request's id."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert assign_request_id(_scope("10.1.2.3", b"lb-1234abcd"), proxies) == "lb-1234abcd"


def test_client_id_is_replaced() -> None:
    """An id sent by an untrusted client is not used."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assigned = assign_request_id(_scope("198.51.100.1", b"chosen-by-client"), proxies)
    assert assigned != "chosen-by-client"
    assert len(assigned) == 32


def test_malformed_id_from_proxy_is_replaced() -> None:
    """A proxy's id with separators or odd length is replaced."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert assign_request_id(_scope("10.1.2.3", b"bad id\r\nx"), proxies) != "bad id\r\nx"
    assert assign_request_id(_scope("10.1.2.3", b"short"), proxies) != "short"
