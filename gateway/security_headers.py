"""Response fields every answer of the gateway carries, unless the response set its own."""

from __future__ import annotations

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
        self._strict = (b"content-security-policy", STRICT_CSP.encode())
        self._docs = (b"content-security-policy", DOCS_CSP.encode())

    def add(self, headers: list[tuple[bytes, bytes]], path: str) -> None:
        """Append the fields headers lacks (names compared in lower case)."""
        present = {name.lower() for name, _ in headers}
        csp = self._docs if path == "/docs" else self._strict
        for name, value in (*self._fields, csp):
            if name not in present:
                headers.append((name, value))
