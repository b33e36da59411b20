"""The browser UI: ``/`` serves the single page, ``/app/…`` its modules and style sheet.

The files live in the package (``gateway/web``) and are read once, when the router is built; a
request can only name one of them, so no path reaches outside that folder. ``index.html`` refers
to its assets as ``/app/<version>/<name>``, where version is a digest of every file: such a URL
never changes its content, so browsers keep it for a year (``immutable``), while the page itself
is ``no-store`` and picks up a new release at the next load. ``/app/<name>`` serves the current
files for revalidation (``no-cache`` with an ETag); an old version's URL gets the current file,
also ``no-cache``, so a rolling release never caches the wrong content.

Every answer carries a strict Content-Security-Policy: scripts, styles and connections from this
origin only, no inline code, no framing; forms may post here and to Keycloak, where the logout
form's redirect ends. The referrer policy is ``same-origin`` so that the logout form carries its
``Origin`` (the gateway's CSRF check), while other sites still receive no referrer.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.browser.csrf import origin_of
from gateway.errors import NotFound

__all__ = ["IMMUTABLE", "REVALIDATE", "StaticBundle", "content_security_policy", "create_router"]

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
NO_STORE = "no-store"
INDEX = "index.html"
# Not no-referrer: under that policy browsers send ``Origin: null`` with form posts, and the
# sign-out form's Origin is what the gateway checks. Other sites still get no referrer.
REFERRER_POLICY = "same-origin"
VERSION_MARK = b"{{version}}"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:html|js|css|svg)$")
_VERSION = re.compile(r"^[0-9a-f]{16}$")
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}


def content_security_policy(form_action_origins: Iterable[str] = ()) -> str:
    """The pages' policy; form_action_origins are added to ``form-action`` (Keycloak)."""
    form_action = " ".join(["'self'", *form_action_origins])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        f"form-action {form_action}"
    )


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the bundle, ready to send."""

    body: bytes
    media_type: str
    etag: str


class StaticBundle:
    """The UI's files, read once from a folder (flat: sub-folders and other names are ignored)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        if INDEX not in files:
            raise ValueError(f"the web bundle has no {INDEX}")
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name] + b"\0")
        self.version = digest.hexdigest()[:16]
        self._assets = {name: _asset(name, body) for name, body in files.items() if name != INDEX}
        self.index = _asset(INDEX, files[INDEX].replace(VERSION_MARK, self.version.encode()))

    @classmethod
    def load(cls, root: Traversable | None = None) -> StaticBundle:
        """The files of root (default: the package's ``gateway/web``); raises ValueError."""
        folder = root or importlib.resources.files("gateway").joinpath("web")
        files = {
            entry.name: entry.read_bytes()
            for entry in folder.iterdir()
            if _NAME.fullmatch(entry.name) and entry.is_file() and not _is_link(entry)
        }
        return cls(files)

    def get(self, name: str) -> Asset:
        """The asset called name (never the page); raises NotFound."""
        asset = self._assets.get(name)
        if asset is None:
            raise NotFound("No such file.", code="asset_not_found")
        return asset

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._assets)


def _is_link(entry: Traversable) -> bool:
    # A link could point anywhere on the machine; only files really in the folder are served.
    return isinstance(entry, Path) and entry.is_symlink()


def _asset(name: str, body: bytes) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, _TYPES[name.rsplit(".", 1)[1]], etag)


def create_router(
    bundle: StaticBundle | None = None, *, form_action_origins: Iterable[str] = ()
) -> APIRouter:
    """``GET /``, ``/app/{name}`` and ``/app/{version}/{name}`` over bundle (default: packaged).

    form_action_origins are URLs (only their origins are used) that forms may also target.
    """
    files = bundle or StaticBundle.load()
    origins = [o for o in (origin_of(url) for url in form_action_origins) if o is not None]
    csp = content_security_policy(dict.fromkeys(origins))
    router = APIRouter(include_in_schema=False)

    def send(request: Request, asset: Asset, cache_control: str) -> Response:
        headers = {
            "Cache-Control": cache_control,
            "Content-Security-Policy": csp,
            "Referrer-Policy": REFERRER_POLICY,
            "X-Content-Type-Options": "nosniff",
        }
        if cache_control != NO_STORE:
            headers["ETag"] = asset.etag
            if _matches(request.headers.get("if-none-match"), asset.etag):
                return Response(status_code=304, headers=headers)
        body = b"" if request.method == "HEAD" else asset.body
        response = Response(body, headers=headers, media_type=asset.media_type)
        response.headers["Content-Length"] = str(len(asset.body))
        return response

    @router.api_route("/", methods=["GET", "HEAD"])
    async def index(request: Request) -> Response:
        """The single page of the UI."""
        return send(request, files.index, NO_STORE)

    @router.api_route("/app/{name}", methods=["GET", "HEAD"])
    async def asset(request: Request, name: str) -> Response:
        """A file of the UI under its stable name, revalidated on every use."""
        return send(request, files.get(name), REVALIDATE)

    @router.api_route("/app/{version}/{name}", methods=["GET", "HEAD"])
    async def versioned_asset(request: Request, version: str, name: str) -> Response:
        """A file of the UI under the bundle's version: cached for good when it is current."""
        if not _VERSION.fullmatch(version):
            raise NotFound("No such file.", code="asset_not_found")
        current = version == files.version
        return send(request, files.get(name), IMMUTABLE if current else REVALIDATE)

    return router


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags
