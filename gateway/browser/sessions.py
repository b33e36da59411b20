"""Browser sessions (backend for frontend): an opaque cookie in the browser, tokens in Redis.

The cookie holds a random session id (256 bits) and nothing else; ``gateway.browser.session_store``
keeps the tokens. A login always gets a new id (a cookie set before login is never adopted). A
session ends after ``session_idle_seconds`` without a request or ``session_max_seconds`` after
login, whichever comes first, and when Keycloak refuses to renew its tokens.

Refresh: when the access token is within ``refresh_margin_seconds`` of expiry, one coroutine per
process (single flight) takes the Redis lock and redeems the refresh token; every other request,
in this process or another, waits for the record's ``version`` to change and uses the new tokens.
Writes are compare-and-set on ``version`` (the fencing token), so a writer that lost the lock can
never put back a refresh token Keycloak has already rotated. A refused refresh ends the session;
an unreachable Keycloak does not, as long as the current access token is still valid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn, Protocol, Self

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.audit.events import AuditEvent, AuditSink, Outcome
from gateway.browser.oidc import GrantRejected, TokenSet
from gateway.browser.session_store import SessionRecord, SessionStore, session_key
from gateway.errors import AuthenticationError, DependencyUnavailable
from gateway.identity import Identity
from gateway.settings import Environment

__all__ = [
    "AccessTokenVerifier",
    "SessionAuthenticator",
    "SessionExpired",
    "SessionManager",
    "SessionSettings",
    "TokenRefresher",
    "read_cookie",
]

_POLL_SECONDS = 0.05


class SessionSettings(BaseSettings):
    """Cookies, lifetimes and refresh of browser sessions (seconds), from ``MRO_GATEWAY_…``."""

    model_config = SettingsConfigDict(env_prefix="MRO_GATEWAY_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    # Development switch for plain http on loopback: no ``Secure``, hence no ``__Host-`` prefix
    # (browsers refuse such cookies without it). Refused in production.
    session_cookie_secure: bool = True
    session_idle_seconds: int = 1800
    session_max_seconds: int = 36_000
    session_touch_seconds: int = 60  # idle time is recorded at most this often
    refresh_margin_seconds: int = 60
    refresh_lock_seconds: float = 15.0
    refresh_wait_seconds: float = 10.0
    login_state_seconds: int = 600
    access_token_lifetime_seconds: int = 300  # how long a revocation must be remembered
    # How long a replica trusts its last look at the revocations of one person and session.
    revocation_cache_seconds: float = 0.5
    logout_token_max_age_seconds: int = 120
    post_logout_redirect_path: str = "/"
    redis_prefix: str = "mro:"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.environment is Environment.PRODUCTION and not self.session_cookie_secure:
            raise ValueError("MRO_GATEWAY_SESSION_COOKIE_SECURE must stay true in production")
        if not 0 < self.session_idle_seconds <= self.session_max_seconds:
            raise ValueError("session_idle_seconds must be > 0 and <= session_max_seconds")
        return self

    @property
    def cookie_name(self) -> str:
        return "__Host-mro-session" if self.session_cookie_secure else "mro-session"

    @property
    def login_cookie_name(self) -> str:
        return "__Host-mro-login" if self.session_cookie_secure else "mro-login"


class SessionExpired(AuthenticationError):
    """The cookie names no live session (logged out, expired, or refresh refused)."""

    code = "session_expired"


class AccessTokenVerifier(Protocol):
    """Verifies an access token (``BearerAuthenticator.verify``); raises AuthenticationError."""

    async def verify(self, token: str) -> Identity: ...


class TokenRefresher(Protocol):
    """Redeems a refresh token (``OidcClient.refresh``); raises GrantRejected."""

    async def refresh(self, refresh_token: str) -> TokenSet: ...


class SessionManager:
    """Starts, resolves (enforcing limits and refreshing tokens) and ends sessions."""

    def __init__(
        self,
        store: SessionStore,
        oidc: TokenRefresher,
        verifier: AccessTokenVerifier,
        settings: SessionSettings,
        audit: AuditSink,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._store = store
        self._oidc = oidc
        self._verifier = verifier
        self._audit = audit
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._inflight: dict[str, asyncio.Future[SessionRecord]] = {}

    async def start(
        self, tokens: TokenSet, previous_id: str | None = None
    ) -> tuple[str, SessionRecord]:
        """A new session for tokens under a new id; a previous session is ended, never adopted.

        Raises AuthenticationError when the access token does not verify.
        """
        if previous_id:
            await self.end(previous_id)
        identity = await self._verifier.verify(tokens.access_token)
        now = self._clock()
        record = SessionRecord.new(identity, tokens, now)
        ttl = self._expires_at(record) - now
        session_id = await self._store.create(record, ttl, self.settings.session_max_seconds)
        return session_id, record

    async def current(self, session_id: str) -> SessionRecord | None:
        """The live session of session_id as stored (no refresh, idle time not recorded)."""
        key = session_key(session_id)
        record = await self._store.load(key)
        if record is None:
            return None
        if self._clock() >= self._expires_at(record):
            await self._store.delete(key, record)
            return None
        return record

    async def resolve(self, session_id: str) -> SessionRecord:
        """The live session, with an access token refreshed when it is about to expire.

        Raises SessionExpired, or DependencyUnavailable (Redis, or Keycloak while the access
        token has expired).
        """
        record = await self.current(session_id)
        if record is None:
            raise SessionExpired("The session has ended; log in again.")
        key = session_key(session_id)
        now = self._clock()
        if record.access_expires_at - now <= self.settings.refresh_margin_seconds:
            record = await self._single_flight(key, record)
        elif now - record.last_seen_at >= self.settings.session_touch_seconds:
            touched = dataclasses.replace(record, last_seen_at=now)
            if await self._store.save(key, touched, record.version, self._ttl(touched, now)):
                record = touched
        return record

    async def end(self, session_id: str) -> SessionRecord | None:
        """End one session; the record it had, if any."""
        key = session_key(session_id)
        record = await self._store.load(key)
        await self._store.delete(key, record)
        return record

    async def end_all(self, *, sid: str | None, sub: str | None) -> int:
        """End every session of a Keycloak session (or, without sid, of a subject)."""
        if sid:
            return await self._store.delete_indexed("sid", sid)
        if sub:
            return await self._store.delete_indexed("sub", sub)
        return 0

    def _expires_at(self, record: SessionRecord) -> float:
        settings = self.settings
        return record.expires_at(settings.session_idle_seconds, settings.session_max_seconds)

    def _ttl(self, record: SessionRecord, now: float) -> float:
        return self._expires_at(record) - now

    async def _single_flight(self, key: str, record: SessionRecord) -> SessionRecord:
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._refresh(key, record))
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(future)

    def _settled(self, key: str, future: asyncio.Future[SessionRecord]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            future.exception()  # retrieved here even when every waiter went away

    async def _refresh(self, key: str, seen: SessionRecord) -> SessionRecord:
        deadline = self._monotonic() + self.settings.refresh_wait_seconds
        while True:
            token = await self._store.lock(key, self.settings.refresh_lock_seconds)
            if token is not None:
                try:
                    return await self._refresh_locked(key)
                finally:
                    await self._store.unlock(key, token)
            # Another request (maybe another process) is refreshing: wait for its result.
            while await self._store.locked(key):
                latest = await self._store.load(key)
                if latest is None:
                    raise SessionExpired("The session has ended; log in again.")
                if latest.version != seen.version:
                    return latest
                if self._monotonic() >= deadline:
                    return self._still_valid(latest)
                await self._sleep(_POLL_SECONDS)
            latest = await self._store.load(key)
            if latest is None:
                raise SessionExpired("The session has ended; log in again.")
            if latest.version != seen.version:
                return latest

    async def _refresh_locked(self, key: str) -> SessionRecord:
        record = await self._store.load(key)
        now = self._clock()
        if record is None:
            raise SessionExpired("The session has ended; log in again.")
        if record.access_expires_at - now > self.settings.refresh_margin_seconds:
            return record  # refreshed by another process meanwhile
        if not record.refresh_token or (
            record.refresh_expires_at is not None and record.refresh_expires_at <= now
        ):
            await self._failed(key, record, "refresh_token_expired")
        try:
            tokens = await self._oidc.refresh(record.refresh_token)
            identity = await self._verifier.verify(tokens.access_token)
        except GrantRejected as exc:
            await self._failed(key, record, exc.error)
        except AuthenticationError as exc:
            await self._failed(key, record, exc.code)
        except DependencyUnavailable:
            return self._still_valid(record)
        updated = record.refreshed(identity, tokens, now)
        if not await self._store.save(key, updated, record.version, self._ttl(updated, now)):
            latest = await self._store.load(key)
            if latest is None:
                raise SessionExpired("The session has ended; log in again.")
            return latest
        self._emit("auth.session_refreshed", "success", updated, None)
        return updated

    async def _failed(self, key: str, record: SessionRecord, reason: str) -> NoReturn:
        await self._store.delete(key, record)
        self._emit("auth.refresh_failed", "failure", record, reason)
        raise SessionExpired("The session could not be renewed; log in again.")

    def _still_valid(self, record: SessionRecord) -> SessionRecord:
        if record.access_expires_at > self._clock():
            return record
        raise DependencyUnavailable("The session cannot be renewed right now.")

    def _emit(
        self, action: str, outcome: Outcome, record: SessionRecord, reason: str | None
    ) -> None:
        self._audit.emit(
            AuditEvent(
                action=action,
                outcome=outcome,
                actor=record.subject,
                reason=reason,
                details={"sid": record.sid} if record.sid else {},
            )
        )


def read_cookie(headers: Mapping[str, str], name: str) -> str | None:
    """The value of cookie name in the request's Cookie fields.

    Raises AuthenticationError when it is sent more than once (which one is real is unknowable).
    """
    getlist = getattr(headers, "getlist", None)
    fields: list[str] = getlist("cookie") if getlist else [headers.get("cookie", "")]
    values = [
        value.strip()
        for field in fields
        for pair in field.split(";")
        for cookie, sep, value in [pair.strip().partition("=")]
        if sep and cookie == name
    ]
    if len(values) > 1:
        raise AuthenticationError("The session cookie is sent twice.", code="ambiguous_credentials")
    return values[0] if values and values[0] else None


class SessionAuthenticator:
    """Authenticates browser requests by their session cookie (the chain's first member)."""

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager
        self.session_cookie = manager.settings.cookie_name

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        """The session's Identity, None without the cookie.

        Raises SessionExpired (401) for an unknown or ended session, DependencyUnavailable.
        """
        session_id = read_cookie(headers, self.session_cookie)
        if session_id is None:
            return None
        return (await self._manager.resolve(session_id)).identity()
