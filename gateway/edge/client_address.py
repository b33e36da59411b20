"""Who is on the other end: the client address, trusting ``X-Forwarded-For`` only from our proxies.

The socket peer is the client unless it is a configured trusted proxy. Then the client is the
right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy: entries to its left were
written by the client and prove nothing, so rotating them cannot change the address we see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from starlette.types import Scope

__all__ = ["TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The CIDRs of the reverse proxies allowed to tell us the client address and request id."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip()
        )
        # Peers repeat: remember the verdict per address string instead of parsing each time.
        self.is_trusted = lru_cache(maxsize=4096)(self._is_trusted)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def _is_trusted(self, address: str) -> bool:
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def peer(self, scope: Scope) -> str:
        """The socket peer's address (``unknown`` when the server does not say)."""
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    def peer_is_trusted(self, scope: Scope) -> bool:
        """True when the request came straight from one of our proxies."""
        return bool(self._networks) and self.is_trusted(self.peer(scope))

    def client_ip(self, scope: Scope) -> str:
        """The client address of the request in scope."""
        peer = self.peer(scope)
        if not self._networks or not self.is_trusted(peer):
            return peer
        chain = _forwarded_for(scope)
        client = peer
        for entry in reversed(chain):
            if not _is_ip(entry):
                break
            client = entry
            if not self.is_trusted(entry):
                break
        return client


def _forwarded_for(scope: Scope) -> list[str]:
    entries: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            entries.extend(part.strip() for part in value.decode("latin-1").split(","))
    return entries


@lru_cache(maxsize=4096)
def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
