"""Response fields every answer of the gateway carries, unless the response set its own."""

from __future__ import annotations

from collections.abc import Set

__all__ = ["SecurityHeaders"]

# Nothing may load, frame or be framed: the gateway serves JSON, not pages.
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
# The development-only API explorer loads its script and style from a CDN.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"


class SecurityHeaders:
    """The fixed field list, built once from the settings."""

    def __init__(self, public_url: str) -> None:
        fields = [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            ("cross-origin-resource-policy", "same-origin"),
            ("cache-control", "no-store"),
        ]
        if public_url.lower().startswith("https://"):
            fields.append(("strict-transport-security", HSTS))
        self._fields = tuple((name.encode(), value.encode()) for name, value in fields)
        self._strict_fields = (*self._fields, (b"content-security-policy", STRICT_CSP.encode()))
        self._docs_fields = (*self._fields, (b"content-security-policy", DOCS_CSP.encode()))

    def add(
        self,
        headers: list[tuple[bytes, bytes]],
        path: str,
        present: Set[bytes] | None = None,
    ) -> None:
        """Append the fields headers lacks (names compared in lower case); ``present``, when
        given, holds the lower-cased names headers already has."""
        if present is None:
            present = {name.lower() for name, _ in headers}
        for field in self._docs_fields if path == "/docs" else self._strict_fields:
            if field[0] not in present:
                headers.append(field)
