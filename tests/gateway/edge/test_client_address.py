"""The client address: the socket peer, or X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

from gateway.edge.client_address import TrustedProxies


def _scope(peer: str, *forwarded: str) -> dict[str, object]:
    return {
        "client": (peer, 5000),
        "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded],
    }


def test_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    """X-Forwarded-For from an untrusted peer is ignored."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip(_scope("198.51.100.9", "1.1.1.1")) == "198.51.100.9"


def test_rightmost_untrusted_entry_is_the_client() -> None:
    """Behind trusted proxies the right-most address that is not a proxy is the client."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    scope = _scope("10.0.0.2", "6.6.6.6, 198.51.100.9", "10.0.0.7")
    assert proxies.client_ip(scope) == "198.51.100.9"


def test_garbage_entry_stops_the_walk() -> None:
    """A non-address entry is not believed; the last proven hop stands."""
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip(_scope("10.0.0.2", "not-an-ip")) == "10.0.0.2"


def test_no_trusted_proxies_means_the_socket_peer() -> None:
    """Without configured proxies nothing is trusted, loopback included."""
    proxies = TrustedProxies([])
    assert not proxies
    assert proxies.client_ip(_scope("127.0.0.1", "9.9.9.9")) == "127.0.0.1"
    assert not proxies.peer_is_trusted(_scope("127.0.0.1"))
