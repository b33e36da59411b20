"""Request ids: one per request, echoed to the client, sent upstream, written in logs and audit."""

from __future__ import annotations

import os
import re

from starlette.types import Scope

from gateway.edge.client_address import TrustedProxies

__all__ = ["HEADER", "assign_request_id", "new_request_id"]

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
# What a proxy's id may look like: short, printable, no separators that could split a log line.
_WELL_FORMED = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")


def new_request_id() -> str:
    """A fresh random id (128 bits, hex)."""
    return os.urandom(16).hex()


def assign_request_id(scope: Scope, proxies: TrustedProxies) -> str:
    """The id of this request: a trusted proxy's well-formed ``X-Request-ID``, else a new one."""
    if proxies.peer_is_trusted(scope):
        value: bytes
        for name, value in scope["headers"]:
            if name == _HEADER_BYTES and _WELL_FORMED.fullmatch(value):
                return value.decode("ascii")
    return new_request_id()
