"""Authentication: the chain of authenticators, and the guard against credential floods.

The chain asks, in order, the session authenticator (browser cookie), the bearer authenticator
and the API-key authenticator. The first one that finds its kind of credential decides: it
returns the Identity or raises ``AuthenticationError``; later ones are not asked. A request
without any credential gets a 401 without an ``error`` parameter in its challenge.

Every rejected credential counts against ``invalid_credentials`` per client IP. Once an address
has used that up, its credentials are refused with 429 *before* any signature or hash is
checked, from an in-process table, so a flood of forged tokens costs neither verification nor a
Redis round trip. Other replicas learn about the address on its next failure there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from starlette.datastructures import Headers

from gateway.audit import AuditEvent, AuditSink
from gateway.context import RequestContext
from gateway.errors import AuthenticationError, RateLimited
from gateway.identity import Authenticator, Identity
from gateway.metrics import Metrics
from gateway.problems import CREDENTIALS_MISSING
from gateway.ratelimit import Limit, Limiter, state_header

__all__ = ["AuthenticationChain", "InvalidCredentialGuard"]

_CREDENTIAL_HEADERS = ("authorization", "x-api-key")


class InvalidCredentialGuard:
    """Counts rejected credentials per client IP and refuses addresses over the limit."""

    def __init__(
        self,
        limiter: Limiter,
        limit: Limit,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        self._limiter = limiter
        self._limit = limit
        self._clock = clock
        self._max_entries = max_entries
        self._blocked: dict[str, tuple[float, str]] = {}

    def check(self, client_ip: str) -> None:
        """Raise RateLimited when client_ip used up its allowance of invalid credentials."""
        entry = self._blocked.get(client_ip)
        if entry is None:
            return
        until, field = entry
        wait = until - self._clock()
        if wait <= 0:
            del self._blocked[client_ip]
            return
        raise RateLimited(
            "Too many invalid credentials from this address.",
            retry_after=max(1, int(wait + 0.999)),
            headers={"RateLimit-Policy": self._policy_field(), "RateLimit": field},
        )

    async def record_failure(self, client_ip: str) -> None:
        """Count one rejected credential; block the address once nothing is left."""
        decision = await self._limiter.hit("ip:" + client_ip, (self._limit,))
        usage = decision.usages[0]
        if not decision.allowed or usage.remaining <= 0:
            if len(self._blocked) >= self._max_entries:
                self._forget_expired()
            self._blocked[client_ip] = (
                self._clock() + max(usage.reset, 1.0),
                state_header(decision),
            )

    def _policy_field(self) -> str:
        return f'"{self._limit.name}";q={self._limit.amount};w={self._limit.window}'

    def _forget_expired(self) -> None:
        now = self._clock()
        self._blocked = {ip: entry for ip, entry in self._blocked.items() if entry[0] > now}
        if len(self._blocked) >= self._max_entries:
            self._blocked.clear()


class AuthenticationChain:
    """Session → bearer → API key; the first credential present decides."""

    def __init__(
        self,
        authenticators: Sequence[Authenticator],
        guard: InvalidCredentialGuard,
        metrics: Metrics,
        audit: AuditSink,
        session_cookie: str | None = None,
    ) -> None:
        self._authenticators = tuple(authenticators)
        self._guard = guard
        self._metrics = metrics
        self._audit = audit
        self._session_cookie = session_cookie

    def _carries_credential(self, headers: Headers) -> bool:
        for name in _CREDENTIAL_HEADERS:
            values = headers.getlist(name)
            if len(values) > 1:
                raise AuthenticationError(
                    f"More than one {name} field.", code="ambiguous_credentials"
                )
            if values:
                return True
        if self._session_cookie is None:
            return False
        return any(self._session_cookie in cookie for cookie in headers.getlist("cookie"))

    async def authenticate(self, headers: Headers, context: RequestContext) -> Identity:
        """The caller's Identity.

        Raises AuthenticationError (401) without a valid credential, RateLimited (429) when the
        client's address sent too many invalid ones, and DependencyUnavailable (503) when the
        credential cannot be checked right now.
        """
        try:
            if not self._carries_credential(headers):
                raise AuthenticationError(
                    "This resource needs a credential.", code=CREDENTIALS_MISSING
                )
        except AuthenticationError as exc:
            if exc.code != CREDENTIALS_MISSING:
                await self._rejected(exc, context)
            raise
        self._guard.check(context.client_ip)
        try:
            for authenticator in self._authenticators:
                identity = await authenticator.authenticate(headers)
                if identity is not None:
                    return identity
            raise AuthenticationError(
                "The credential is not supported.", code="unsupported_credential"
            )
        except AuthenticationError as exc:
            await self._rejected(exc, context)
            raise

    async def _rejected(self, exc: AuthenticationError, context: RequestContext) -> None:
        self._metrics.auth_failure(exc.code)
        self._audit.emit(
            AuditEvent(
                action="auth.token_rejected",
                outcome="failure",
                reason=exc.code,
                request_id=context.request_id,
                client_ip=context.client_ip,
                target=context.route,
            )
        )
        await self._guard.record_failure(context.client_ip)
