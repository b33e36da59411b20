"""The browser UI's static routes, and source checks that keep the UI free of inline code."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import pytest
from fastapi import FastAPI

from gateway import problems
from gateway.routes.web import (
    IMMUTABLE,
    REVALIDATE,
    StaticBundle,
    content_security_policy,
    create_router,
)

WEB = Path(__file__).resolve().parents[3] / "gateway" / "web"
KEYCLOAK = "https://login.mro.test:8443/realms/mro"
CSP = content_security_policy(["https://login.mro.test:8443"])


def _app(bundle: StaticBundle | None = None) -> FastAPI:
    app = FastAPI()
    problems.install(app)
    app.include_router(create_router(bundle, form_action_origins=[KEYCLOAK]))
    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


@pytest.fixture(scope="module")
def bundle() -> StaticBundle:
    return StaticBundle.load()


async def _raw_get(app: FastAPI, raw_path: bytes) -> tuple[int, dict[str, str], bytes]:
    """Call app with a path exactly as given (no client normalises it)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway.test")],
        "client": ("127.0.0.1", 1234),
        "server": ("gateway.test", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, body


# --- serving ------------------------------------------------------------------------------------


async def test_index_is_not_stored_and_carries_the_strict_policy(
    http: httpx.AsyncClient, bundle: StaticBundle
) -> None:
    """The page is no-store, HTML, with the strict CSP naming Keycloak only in form-action."""
    response = await http.get("/")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "etag" not in response.headers
    assert f'src="/app/{bundle.version}/app.js"' in response.text
    assert f'href="/app/{bundle.version}/app.css"' in response.text
    assert "{{version}}" not in response.text


def test_policy_is_exactly_the_documented_one() -> None:
    """Only this origin for scripts, styles and connections; no framing; forms to Keycloak."""
    assert content_security_policy(["https://sso.example"]) == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self' https://sso.example"
    )


async def test_form_action_uses_origins_only_and_drops_unusable_urls() -> None:
    """A Keycloak URL with a path contributes its origin; a URL without one is ignored."""
    app = FastAPI()
    app.include_router(
        create_router(
            form_action_origins=["HTTP://Sso.Example:80/realms/mro", "not a url", "ftp://x"]
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        policy = (await client.get("/")).headers["content-security-policy"]
    assert policy.endswith("form-action 'self' http://sso.example")


async def test_versioned_asset_is_cached_for_good(
    http: httpx.AsyncClient, bundle: StaticBundle
) -> None:
    """An asset under the current version is immutable for a year, typed, and has the CSP."""
    response = await http.get(f"/app/{bundle.version}/app.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["content-security-policy"] == CSP
    assert response.content == (WEB / "app.js").read_bytes()
    css = await http.get(f"/app/{bundle.version}/app.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"


async def test_stable_name_and_old_version_are_revalidated(
    http: httpx.AsyncClient, bundle: StaticBundle
) -> None:
    """Without the current version an asset is served but never cached without revalidation."""
    stable = await http.get("/app/api.js")
    old = await http.get("/app/0123456789abcdef/api.js")
    assert bundle.version != "0123456789abcdef"
    for response in (stable, old):
        assert response.status_code == 200
        assert response.headers["cache-control"] == REVALIDATE
        assert response.content == (WEB / "api.js").read_bytes()


async def test_matching_etag_answers_not_modified(http: httpx.AsyncClient) -> None:
    """A request with the asset's ETag gets 304 without a body; another ETag gets the file."""
    first = await http.get("/app/dom.js")
    etag = first.headers["etag"]
    again = await http.get("/app/dom.js", headers={"If-None-Match": f'W/"x", {etag}'})
    other = await http.get("/app/dom.js", headers={"If-None-Match": '"stale"'})
    assert again.status_code == 304
    assert again.content == b""
    assert other.status_code == 200


async def test_head_sends_the_fields_without_the_body(http: httpx.AsyncClient) -> None:
    """HEAD answers the length and type of the file, and no body."""
    response = await http.head("/app/app.css")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len((WEB / "app.css").read_bytes()))


@pytest.mark.parametrize(
    "path",
    [
        "/app/nope.js",
        "/app/index.html",
        "/app/0123456789abcdef/nope.js",
        "/app/not-a-version/app.js",
        "/app/app.js/extra/more",
    ],
)
async def test_unknown_asset_is_a_not_found_problem(http: httpx.AsyncClient, path: str) -> None:
    """Names outside the bundle (and the page itself under /app) are 404 problem+json."""
    response = await http.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


async def test_unknown_name_has_the_asset_code(http: httpx.AsyncClient) -> None:
    """The problem for a missing file carries the stable code asset_not_found."""
    response = await http.get("/app/missing.js")
    assert response.json()["code"] == "asset_not_found"


@pytest.mark.parametrize(
    "raw",
    [
        b"/app/..%2fpolicy.toml",
        b"/app/%2e%2e/policy.toml",
        b"/app/%2e%2e%2fpolicy.toml",
        b"/app/../routes_web.py",
        b"/app/x%2f..%2f..%2froutes_web.py",
        b"/app/..%5c..%5croutes_web.py",
        b"/app/%2e%2e%2f%2e%2e%2fpyproject.toml",
        b"/app/0123456789abcdef/..%2fpolicy.toml",
    ],
)
async def test_no_path_leaves_the_static_folder(raw: bytes) -> None:
    """Encoded or plain dot segments never reach a file outside gateway/web."""
    status, _, body = await _raw_get(_app(), raw)
    assert status == 404
    assert b"[permissions]" not in body
    assert b"def create_router" not in body
    assert b"[project]" not in body


def test_bundle_serves_only_flat_files_with_known_names(tmp_path: Path) -> None:
    """Sub-folders, dot files, other suffixes and symbolic links are not part of the bundle."""
    (tmp_path / "index.html").write_text("<p>{{version}}</p>")
    (tmp_path / "ok.js").write_text("export {};")
    (tmp_path / ".hidden.js").write_text("secret")
    (tmp_path / "notes.txt").write_text("secret")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.js").write_text("secret")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.js"
    outside.write_text("secret")
    (tmp_path / "link.js").symlink_to(outside)
    bundle = StaticBundle.load(tmp_path)
    assert bundle.names == {"ok.js"}
    assert bundle.index.body == f"<p>{bundle.version}</p>".encode()


def test_bundle_without_index_is_refused(tmp_path: Path) -> None:
    """A folder without index.html is not a UI bundle."""
    (tmp_path / "app.js").write_text("")
    with pytest.raises(ValueError, match=r"index\.html"):
        StaticBundle.load(tmp_path)


def test_version_follows_the_content() -> None:
    """Changing any file changes the version (so cached URLs never serve stale code)."""
    one = StaticBundle({"index.html": b"x", "a.js": b"1"})
    two = StaticBundle({"index.html": b"x", "a.js": b"2"})
    assert one.version != two.version
    assert re.fullmatch(r"[0-9a-f]{16}", one.version)


def test_packaged_bundle_has_every_module_the_page_imports(bundle: StaticBundle) -> None:
    """Each relative import in the modules names a file of the bundle."""
    imports: set[str] = set()
    for path in WEB.glob("*.js"):
        imports |= set(
            re.findall(r"""(?:from|import)\s*\(?\s*["']\./([^"']+)["']""", path.read_text())
        )
    assert imports
    assert imports <= bundle.names


# --- source checks ------------------------------------------------------------------------------

SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
STYLE_ELEMENT = re.compile(r"<style\b", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.IGNORECASE)
HANDLER_ATTRIBUTE = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)
JS_RULES = {
    "markup from a non-literal": re.compile(
        r"""\.(?:inner|outer)HTML\s*\+?=\s*(?!\s*(?:""|'')\s*;)"""
    ),
    "markup insertion": re.compile(r"insertAdjacentHTML|document\.write|createContextualFragment"),
    "string evaluation": re.compile(
        r"\beval\s*\(|new\s+Function\s*\(|set(?:Timeout|Interval)\(\s*[\"'`]"
    ),
    "inline style": re.compile(
        r"""\.style\s*=|\.style\.cssText|setAttribute\(\s*["']style["']|["']?\bstyle["']?\s*:\s*["'`]"""
    ),
    "inline handler": re.compile(r"""setAttribute\(\s*["']on[a-z]+["']|\.on[a-z]+\s*=[^=]"""),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "remote module": re.compile(r"""(?:from|import)\s*\(?\s*["'](?:https?:)?//"""),
}


def html_problems(text: str) -> list[str]:
    """What in an HTML text breaks the no-inline-code rule."""
    found = []
    for attributes, body in SCRIPT.findall(text):
        if body.strip():
            found.append("inline script body")
        if "src=" not in attributes:
            found.append("script without src")
    if STYLE_ELEMENT.search(text):
        found.append("style element")
    if STYLE_ATTRIBUTE.search(text):
        found.append("style attribute")
    if HANDLER_ATTRIBUTE.search(text):
        found.append("event handler attribute")
    if EXTERNAL.search(text):
        found.append("external resource")
    return found


def js_problems(text: str) -> list[str]:
    """What in a module breaks the no-inline-code and no-markup-from-data rules."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    return [name for name, rule in JS_RULES.items() if rule.search(code)]


@pytest.mark.parametrize("path", sorted(WEB.glob("*.html")), ids=lambda p: p.name)
def test_html_has_no_inline_code(path: Path) -> None:
    """Pages load scripts and styles by URL only: no bodies, style attributes or handlers."""
    assert html_problems(path.read_text("utf-8")) == []


@pytest.mark.parametrize("path", sorted(WEB.glob("*.js")), ids=lambda p: p.name)
def test_modules_build_the_page_without_markup_or_inline_code(path: Path) -> None:
    """Modules never parse data as markup, evaluate strings, or set styles and handlers inline."""
    assert js_problems(path.read_text("utf-8")) == []


@pytest.mark.parametrize("path", sorted(WEB.glob("*.css")), ids=lambda p: p.name)
def test_styles_load_nothing_from_elsewhere(path: Path) -> None:
    """The style sheet imports nothing and names no remote font or image."""
    text = path.read_text("utf-8")
    assert "@import" not in text
    assert not re.search(r"url\(\s*[\"']?(?:https?:)?//", text)


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        ("<script>alert(1)</script>", "inline script body"),
        ('<script type="module">import "./a.js";</script>', "inline script body"),
        ('<div style="color:red">', "style attribute"),
        ("<style>p{}</style>", "style element"),
        ('<button onclick="go()">', "event handler attribute"),
        ('<img src="x" ONERROR=go()>', "event handler attribute"),
        ('<script src="https://cdn.example/x.js"></script>', "external resource"),
        ('<link href="//fonts.example/f.css" rel="stylesheet">', "external resource"),
    ],
)
def test_html_checks_catch_inline_code(snippet: str, problem: str) -> None:
    """Each HTML rule fails on the thing it forbids."""
    assert problem in html_problems(snippet)


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        ("el.innerHTML = message.content;", "markup from a non-literal"),
        ("el.innerHTML += `<b>${x}</b>`;", "markup from a non-literal"),
        ("el.outerHTML = html;", "markup from a non-literal"),
        ("el.insertAdjacentHTML('beforeend', x);", "markup insertion"),
        ("eval(code);", "string evaluation"),
        ("setTimeout('go()', 5);", "string evaluation"),
        ("el.style = 'color: red';", "inline style"),
        ("el.setAttribute('style', s);", "inline style"),
        ('h("p", { style: "color: red" });', "inline style"),
        ("el.onclick = go;", "inline handler"),
        ('el.setAttribute("onclick", "go()");', "inline handler"),
        ('a.href = "javascript:go()";', "javascript: URL"),
        ('import x from "https://cdn.example/x.js";', "remote module"),
    ],
)
def test_module_checks_catch_unsafe_code(snippet: str, problem: str) -> None:
    """Each module rule fails on the thing it forbids."""
    assert problem in js_problems(snippet)


def test_module_checks_allow_clearing_markup() -> None:
    """Clearing an element with an empty literal is not markup from data."""
    assert js_problems('el.innerHTML = "";\nconst ok = a.onclickCount === 2;') == []
