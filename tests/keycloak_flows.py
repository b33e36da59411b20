"""Real OpenID Connect flows against Keycloak over HTTP, the way a browser would drive them.

The authorization code flow GETs the authorization endpoint, parses Keycloak's login form, posts
the credentials with the session cookies, stops at the redirect to the client's callback and
exchanges the code (with the PKCE verifier) at the token endpoint. Gateway, browser and Keycloak
tests share these helpers; ``TokenCache`` keeps tokens until shortly before they expire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

REALM = "mro"
GATEWAY_CLIENT_ID = "mro-gateway"
GATEWAY_CALLBACK = "http://127.0.0.1:8000/auth/callback"


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


class FlowError(RuntimeError):
    """Keycloak answered a flow step with something other than the expected next step."""


@dataclass(frozen=True)
class Pkce:
    """An RFC 7636 verifier and its S256 challenge."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def _without_secure(set_cookie: str) -> str:
    return ";".join(p for p in set_cookie.split(";") if p.strip().lower() != "secure")


class LoopbackCookies(httpx.BaseTransport):
    """Drops the ``Secure`` flag of cookies set by a loopback server over plain HTTP, and keeps
    every raw ``Set-Cookie`` field received (``set_cookies``) for tests of cookie flags.

    Browsers treat http://127.0.0.1 as a secure context and send such cookies back; httpx's
    cookie jar would not, and Keycloak's login session would be lost between two steps.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self.set_cookies: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        self.set_cookies += response.headers.get_list("set-cookie")
        if request.url.scheme != "http" or request.url.host not in LOOPBACK_HOSTS:
            return response
        headers = [
            (name, _without_secure(value) if name.lower() == "set-cookie" else value)
            for name, value in response.headers.multi_items()
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=response.stream,
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()


def browser_client(**kwargs: Any) -> httpx.Client:
    """An httpx client keeping cookies like a browser on loopback; it follows no redirect."""
    transport = LoopbackCookies(httpx.HTTPTransport())
    return httpx.Client(transport=transport, follow_redirects=False, timeout=30.0, **kwargs)


class _PageParser(HTMLParser):
    """Collects form actions (by id) and link targets of a Keycloak page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: dict[str, str] = {}
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and "action" in attributes:
            self.forms[attributes.get("id", "")] = attributes["action"]
        elif tag == "a" and "href" in attributes:
            self.links.append(attributes["href"])


def _parse(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    return parser


def form_action(html: str, form_id: str) -> str:
    """The action URL of the form with this id; raises FlowError when the page has none."""
    action = _parse(html).forms.get(form_id)
    if action is None:
        raise FlowError(f"no form {form_id!r} on the page")
    return unescape(action)


def link_containing(html: str, fragment: str, base_url: str) -> str:
    """The absolute URL of the first link whose target contains fragment."""
    for href in _parse(html).links:
        if fragment in href:
            return urljoin(base_url, unescape(href))
    raise FlowError(f"no link containing {fragment!r} on the page")


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, without verifying it (tests inspect claims only)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def realm_url(base_url: str, realm: str = REALM) -> str:
    return f"{base_url.rstrip('/')}/realms/{realm}"


def oidc_url(base_url: str, endpoint: str, realm: str = REALM) -> str:
    """One of the realm's OpenID Connect endpoints: auth, token, logout, userinfo, certs."""
    return f"{realm_url(base_url, realm)}/protocol/openid-connect/{endpoint}"


@dataclass
class LoginPage:
    """A browser-like session holding Keycloak's login page for one authorization request."""

    client: httpx.Client
    base_url: str
    html: str
    state: str
    redirect_uri: str
    pkce: Pkce | None
    extra: dict[str, str] = field(default_factory=dict)

    def settle(self, resp: httpx.Response, max_hops: int = 5) -> httpx.Response:
        """Follow Keycloak's own redirects; stop at a page or at the redirect to the client."""
        for _ in range(max_hops):
            location = resp.headers.get("location")
            if not resp.is_redirect or location is None or location.startswith(self.redirect_uri):
                break
            resp = self.client.get(urljoin(str(resp.url), location))
        if resp.status_code == 200:
            self.html = resp.text
        return resp

    def get(self, url: str) -> httpx.Response:
        """GET a Keycloak page (e.g. a link of the current page or from an email)."""
        return self.settle(self.client.get(url))

    def submit(self, form_id: str, data: dict[str, str]) -> httpx.Response:
        """POST a form of the current page with the session's cookies."""
        return self.settle(self.client.post(form_action(self.html, form_id), data=data))

    def login(self, username: str, password: str) -> httpx.Response:
        return self.submit("kc-form-login", {"username": username, "password": password})

    def code(self, resp: httpx.Response) -> str:
        """The authorization code from a redirect to the callback; raises FlowError otherwise."""
        location = resp.headers.get("location", "")
        if resp.status_code != 302 or not location.startswith(self.redirect_uri):
            raise FlowError(f"expected a redirect to the callback, got {resp.status_code}")
        query = parse_qs(urlsplit(location).query)
        if query.get("state") != [self.state] or "code" not in query:
            raise FlowError(f"callback without code or with a foreign state: {location}")
        return str(query["code"][0])


def open_login(
    client: httpx.Client,
    base_url: str,
    *,
    client_id: str = GATEWAY_CLIENT_ID,
    redirect_uri: str = GATEWAY_CALLBACK,
    use_pkce: bool = True,
    scope: str = "openid",
) -> tuple[LoginPage, httpx.Response]:
    """GET the authorization endpoint; the page is Keycloak's login form when it answers 200."""
    pkce = Pkce.new() if use_pkce else None
    state = secrets.token_urlsafe(16)
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": secrets.token_urlsafe(16),
    }
    if pkce is not None:
        params |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    resp = client.get(oidc_url(base_url, "auth"), params=params)
    page = LoginPage(client, base_url, resp.text, state, redirect_uri, pkce)
    return page, resp


def exchange_code(
    client: httpx.Client,
    base_url: str,
    page: LoginPage,
    code: str,
    *,
    client_id: str = GATEWAY_CLIENT_ID,
    client_secret: str | None = None,
) -> httpx.Response:
    """POST the code (and PKCE verifier) to the token endpoint."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": page.redirect_uri}
    if page.pkce is not None:
        data["code_verifier"] = page.pkce.verifier
    auth = (client_id, client_secret) if client_secret is not None else None
    if auth is None:
        data["client_id"] = client_id
    return post_token(client, base_url, data, auth)


def authorization_code_tokens(
    base_url: str,
    username: str,
    password: str,
    *,
    client_id: str = GATEWAY_CLIENT_ID,
    client_secret: str | None = None,
    redirect_uri: str = GATEWAY_CALLBACK,
) -> dict[str, Any]:
    """Log in through the login form with auth code + PKCE; the token endpoint's JSON answer.

    Raises FlowError when a step does not lead to the next one (e.g. wrong password).
    """
    with browser_client() as client:
        page, resp = open_login(client, base_url, client_id=client_id, redirect_uri=redirect_uri)
        if resp.status_code != 200:
            raise FlowError(f"authorization endpoint answered {resp.status_code}")
        code = page.code(page.login(username, password))
        token = exchange_code(
            client, base_url, page, code, client_id=client_id, client_secret=client_secret
        )
        if token.status_code != 200:
            raise FlowError(f"token endpoint answered {token.status_code}: {token.text}")
        tokens: dict[str, Any] = token.json()
        return tokens


def post_token(
    client: httpx.Client, base_url: str, data: dict[str, str], auth: tuple[str, str] | None
) -> httpx.Response:
    """POST a grant to the token endpoint; auth is (client_id, secret) for confidential clients."""
    url = oidc_url(base_url, "token")
    if auth is None:
        return client.post(url, data=data)
    return client.post(url, data=data, auth=httpx.BasicAuth(*auth))


def token_request(
    base_url: str, data: dict[str, str], auth: tuple[str, str] | None
) -> httpx.Response:
    """POST a grant to the realm's token endpoint with a one-off client."""
    with httpx.Client(timeout=30.0) as client:
        return post_token(client, base_url, data, auth)


def client_credentials_tokens(base_url: str, client_id: str, client_secret: str) -> dict[str, Any]:
    """A service account's tokens by the client credentials grant; raises FlowError on refusal."""
    resp = token_request(base_url, {"grant_type": "client_credentials"}, (client_id, client_secret))
    if resp.status_code != 200:
        raise FlowError(f"client credentials refused ({resp.status_code}): {resp.text}")
    tokens: dict[str, Any] = resp.json()
    return tokens


class TokenCache:
    """Token responses by key, refetched when the access token expires within ``margin`` s."""

    def __init__(self, margin: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self._margin = margin
        self._clock = clock
        self._tokens: dict[str, dict[str, Any]] = {}

    def get(self, key: str, fetch: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        cached = self._tokens.get(key)
        if cached is not None:
            expires = float(jwt_claims(cached["access_token"])["exp"])
            if expires - self._clock() > self._margin:
                return cached
        tokens = fetch()
        self._tokens[key] = tokens
        return tokens
