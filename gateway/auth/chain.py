"""Authentication: the chain of authenticators, and the guard against credential floods.

The chain asks, in order, the session authenticator (browser cookie), the bearer authenticator
and the API-key authenticator. The first one that finds its kind of credential decides: it
returns the Identity or raises ``AuthenticationError``; later ones are not asked. A request
without any credential gets a 401 without an ``error`` parameter in its challenge.

Every rejected credential counts against ``invalid_credentials`` per client IP. Once an address
has used that up, it is blocked in an in-process table until the window frees a slot. The guard
limits bad credentials, never good ones: clients behind one NAT address share the budget, so a
valid credential from a blocked address is checked and passes as usual. A rejected one gets 429
instead of 401, and costs no Redis round trip and no audit record; the same credential sent
again during the block is refused from the table, before any signature or hash is checked. Other
replicas learn about the address on its next failure there.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.datastructures import Headers

from gateway.audit.events import AuditEvent, AuditSink
from gateway.edge.request_context import RequestContext
from gateway.errors import AuthenticationError, RateLimited
from gateway.identity import Authenticator, Identity
from gateway.metrics import Metrics
from gateway.problems import CREDENTIALS_MISSING
from gateway.ratelimit.rules import Limit, Limiter, policy_header

__all__ = ["AuthenticationChain", "InvalidCredentialGuard"]

_CREDENTIAL_HEADERS = ("authorization", "x-api-key")
_CREDENTIAL_FIELDS = (b"authorization", b"x-api-key", b"cookie")
# Credentials remembered per blocked address: enough for a few misconfigured clients behind one
# NAT address repeating their stale tokens, small enough for max_entries blocked addresses.
_REMEMBERED = 4


def _credential_digest(headers: Headers) -> bytes:
    """A digest of every field that can carry a credential, exactly as received."""
    digest = hashlib.sha256()
    for name, value in headers.raw:
        if name in _CREDENTIAL_FIELDS:
            digest.update(name + b":" + value + b"\n")
    return digest.digest()


@dataclass(slots=True)
class _Block:
    until: float
    refused: list[bytes] = field(default_factory=list)


class InvalidCredentialGuard:
    """Counts rejected credentials per client IP and refuses more of them from addresses over
    the limit; valid credentials are never refused."""

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
        self._blocked: dict[str, _Block] = {}
        self._policy_field = policy_header((limit,))

    def check_repeat(self, client_ip: str, headers: Headers) -> None:
        """Raise RateLimited when client_ip is blocked and headers repeat a credential already
        refused during the block (no verification needed to refuse it again)."""
        block = self._current(client_ip)
        if block is not None and _credential_digest(headers) in block.refused:
            raise self._refusal(block)

    def check_rejected(self, client_ip: str, headers: Headers) -> None:
        """For a credential just rejected: raise RateLimited, without counting it, when
        client_ip is blocked (and remember the credential for ``check_repeat``)."""
        block = self._current(client_ip)
        if block is None:
            return
        digest = _credential_digest(headers)
        if digest not in block.refused:
            block.refused = [*block.refused, digest][-_REMEMBERED:]
        raise self._refusal(block)

    async def record_failure(self, client_ip: str, headers: Headers) -> None:
        """Count one rejected credential; block the address once nothing is left."""
        decision = await self._limiter.hit("ip:" + client_ip, (self._limit,))
        usage = decision.usages[0]
        if not decision.allowed or usage.remaining <= 0:
            if len(self._blocked) >= self._max_entries:
                self._forget_expired()
            until = self._clock() + max(usage.reset, 1.0)
            self._blocked[client_ip] = _Block(until, [_credential_digest(headers)])

    def _current(self, client_ip: str) -> _Block | None:
        block = self._blocked.get(client_ip)
        if block is not None and block.until <= self._clock():
            del self._blocked[client_ip]
            return None
        return block

    def _refusal(self, block: _Block) -> RateLimited:
        wait = max(1, math.ceil(block.until - self._clock()))
        return RateLimited(
            "Too many invalid credentials from this address.",
            retry_after=wait,
            headers={
                "RateLimit-Policy": self._policy_field,
                "RateLimit": f'"{self._limit.name}";r=0;t={wait}',
            },
        )

    def _forget_expired(self) -> None:
        now = self._clock()
        self._blocked = {ip: block for ip, block in self._blocked.items() if block.until > now}
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
            self._guard.check_repeat(context.client_ip, headers)
            return await self._identify(headers)
        except AuthenticationError as exc:
            if exc.code != CREDENTIALS_MISSING:
                await self._rejected(exc, headers, context)
            raise

    async def _identify(self, headers: Headers) -> Identity:
        for authenticator in self._authenticators:
            identity = await authenticator.authenticate(headers)
            if identity is not None:
                return identity
        raise AuthenticationError("The credential is not supported.", code="unsupported_credential")

    async def _rejected(
        self, exc: AuthenticationError, headers: Headers, context: RequestContext
    ) -> None:
        self._metrics.auth_failure(exc.code)
        # A blocked address gets 429 here: neither counted in Redis nor audited again.
        self._guard.check_rejected(context.client_ip, headers)
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
        await self._guard.record_failure(context.client_ip, headers)
