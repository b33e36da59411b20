"""Cap the request head: too many header fields, or too many bytes in them, is a 431.

uvicorn's default parser (httptools) sets no bound of its own: it hands the application a head of
any size and any number of fields. By the time this check runs the server has buffered the head,
so the check does not save the parser's memory (that bound belongs at the server or the ingress,
see ``docs/security.md``, W2); it stops an oversize head from going any further: no credential
work, no policy lookup, nothing forwarded to the orchestrator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from starlette.types import Scope

from gateway.errors import BadRequest

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_FIELDS",
    "HeaderFieldsTooLarge",
    "HeaderLimits",
]

DEFAULT_MAX_HEADER_BYTES: Final = 16 * 1024
DEFAULT_MAX_HEADER_FIELDS: Final = 100


class HeaderFieldsTooLarge(BadRequest):
    """RFC 6585: the request's header fields, together, are too large or too many."""

    status = 431
    code = "request_header_fields_too_large"
    title = "Request header fields too large"


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """The most header fields a request may send, and the most bytes of their names and values."""

    max_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_fields: int = DEFAULT_MAX_HEADER_FIELDS

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_fields < 1:
            raise ValueError("header limits must be positive")

    def check(self, scope: Scope) -> None:
        """Refuse scope's request when its header fields pass a limit.

        Raises HeaderFieldsTooLarge (431) when there are more than ``max_fields`` fields, or
        when the names and values together hold more than ``max_bytes`` bytes.
        """
        fields: Sequence[tuple[bytes, bytes]] = scope["headers"]
        if len(fields) > self.max_fields:
            raise HeaderFieldsTooLarge(
                f"The request has more than {self.max_fields} header fields."
            )
        if _size(fields) > self.max_bytes:
            raise HeaderFieldsTooLarge(
                f"The request's header fields exceed {self.max_bytes} bytes."
            )


def _size(fields: Iterable[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) for name, value in fields)
