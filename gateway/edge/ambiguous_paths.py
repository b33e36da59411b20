"""Reject request paths that different parsers could read differently, before any routing.

A path is refused (400 ``ambiguous_path``) when its raw bytes hold:

* a ``.`` or ``..`` segment, an empty segment (``//``) or a backslash;
* a percent-escape of a dot, slash, backslash or percent sign (``%2e``, ``%2f``, ``%5c``,
  ``%25``: double encoding) in any letter case, or a malformed escape;
* anything but visible ASCII, or an escape that decodes to a control character or to invalid
  UTF-8 (``%00``, ``%0a``, overlong ``%c0%ae``).

What passes is forwarded byte for byte, so the orchestrator sees exactly the path that was checked.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.types import Scope

from gateway.errors import BadRequest

__all__ = ["check_path", "raw_path"]

# Escapes that change how a path splits into segments, or that hide another escape.
_FORBIDDEN_ESCAPE = re.compile(rb"%(?:2[eEfF5]|5[cC])")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_VISIBLE_ASCII = re.compile(rb"[\x21-\x7e]*")
# C0 and C1 controls and DEL, after decoding.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def raw_path(scope: Scope) -> bytes:
    """The path exactly as the client sent it (without the query)."""
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).split(b"?", 1)[0]
    return str(scope["path"]).encode("utf-8")


def check_path(scope: Scope) -> None:
    """Raise BadRequest(code="ambiguous_path") unless the path has exactly one reading."""
    raw = raw_path(scope)
    if not raw.startswith(b"/") or not _VISIBLE_ASCII.fullmatch(raw):
        raise _ambiguous()
    if b"\\" in raw or b"//" in raw:
        raise _ambiguous()
    if _FORBIDDEN_ESCAPE.search(raw) or _BAD_ESCAPE.search(raw):
        raise _ambiguous()
    for segment in raw.split(b"/")[1:-1]:
        if segment in (b"", b".", b".."):
            raise _ambiguous()
    if raw.endswith((b"/.", b"/..")):
        raise _ambiguous()
    if b"%" in raw:
        try:
            decoded = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _ambiguous() from None
        if _CONTROL.search(decoded):
            raise _ambiguous()
    # The server's decoded path must agree with the raw one (no tricks in between).
    if "\x00" in scope["path"] or "\\" in scope["path"]:
        raise _ambiguous()


def _ambiguous() -> BadRequest:
    return BadRequest("The request path is malformed or ambiguous.", code="ambiguous_path")
