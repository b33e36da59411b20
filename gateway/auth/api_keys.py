"""API keys: the ``mro_<id>_<secret>`` format, peppered hashing, and their authenticator.

A key comes in ``X-API-Key`` or as ``Authorization: Bearer mro_…`` (as OpenAI-style clients send
keys; the bearer-token authenticator steps aside for that prefix).

The database holds ``HMAC-SHA256(pepper, secret)`` only. Peppers rotate: verification tries the
current pepper and every previous one, and a key verified with a previous pepper is re-hashed
with the current one at the next flush.

Every failure (malformed, unknown, expired, revoked, rotated out, wrong secret) raises the same
``AuthenticationError(code="invalid_api_key")``; only the audit event says which it was. An
unknown id costs the same hashing as a known one, so timing does not tell them apart.

Positive results are cached for ``settings.api_key_cache_seconds``: a key revoked on another
replica keeps working here for up to that long (``invalidate`` drops it locally at once).

A key acts for its owner and never beyond them: on every request the owner's current standing in
Keycloak (``gateway.auth.standing``, cached for well under a second per process) decides. A disabled
or deleted owner's keys are refused (401 ``invalid_api_key``, audited ``owner_disabled`` or
``owner_deleted``); otherwise the identity carries the owner's current roles, and the policy
grants only what both the key's roles and the owner's roles give (``Authorizer.grant``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit.events import AuditEvent, AuditSink, Outcome
from gateway.auth import api_key_store as store
from gateway.auth.standing import OwnerStandings
from gateway.errors import AuthenticationError, DependencyUnavailable
from gateway.identity import AuthMethod, Identity
from gateway.settings import GatewaySettings

__all__ = [
    "HEADER",
    "ApiKeyAuthenticator",
    "GeneratedKey",
    "ParsedKey",
    "Peppers",
    "generate_key",
    "parse_key",
]

logger = logging.getLogger(__name__)

HEADER: Final = "x-api-key"
PREFIX: Final = "mro"
ID_LENGTH: Final = 16
SECRET_BYTES: Final = 32
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_LENGTH: Final = 43  # ceil(256 / log2(62))
_FORMAT: Final = re.compile(r"^mro_([0-9A-Za-z]{12,64})_([0-9A-Za-z]{43})$")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """The two parts of a presented key."""

    key_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A new key: ``token`` is shown to its owner once; the database gets ``key_id`` and a hash."""

    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{PREFIX}_{self.key_id}_{self.secret}"


def _base62(value: int, length: int) -> str:
    digits = []
    for _ in range(length):
        value, rest = divmod(value, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits))


def generate_key() -> GeneratedKey:
    """A new random key id and 32-byte secret, both base62."""
    key_id = "".join(secrets.choice(_BASE62) for _ in range(ID_LENGTH))
    secret = _base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_LENGTH)
    return GeneratedKey(key_id, secret)


def parse_key(value: str) -> ParsedKey | None:
    """The parts of a well-formed key, or None."""
    match = _FORMAT.match(value.strip())
    return ParsedKey(match.group(1), match.group(2)) if match else None


class Peppers:
    """The current pepper and the previous ones, for hashing and verifying secrets."""

    def __init__(self, current: str, previous: Sequence[str] = ()) -> None:
        if not current:
            raise ValueError("the API key pepper must not be empty")
        self._all = [p.encode() for p in (current, *previous) if p]

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Peppers:
        return cls(
            settings.api_key_pepper.get_secret_value(),
            [p.get_secret_value() for p in settings.api_key_previous_peppers],
        )

    @property
    def current_version(self) -> str:
        return _fingerprint(self._all[0])

    def hash(self, secret: str) -> str:
        """HMAC-SHA256 of secret under the current pepper, hex."""
        return _mac(self._all[0], secret)

    def verify(self, secret: str, stored_hash: str) -> bool | None:
        """True: matches the current pepper; False: matches a previous one; None: no match.

        Every pepper is tried whatever the outcome, so the work does not depend on it.
        """
        matched: list[bool] = [
            hmac.compare_digest(_mac(pepper, secret), stored_hash) for pepper in self._all
        ]
        if matched[0]:
            return True
        return False if any(matched[1:]) else None


def _mac(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def _fingerprint(pepper: bytes) -> str:
    return hmac.new(pepper, b"mro-api-key-pepper-id", hashlib.sha256).hexdigest()[:16]


def _bearer_key(headers: Mapping[str, str]) -> str | None:
    """The key of ``Authorization: Bearer mro_…`` (as OpenAI-style clients send keys), or None."""
    value = headers.get("authorization") or headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(PREFIX + "_"):
        return None
    return token


# A stored hash for the unknown-id path to compare against: same length, matches nothing.
_DUMMY_HASH: Final = "0" * 64


@dataclass(slots=True)
class _Cached:
    digest: bytes
    identity: Identity
    valid_until: float


class ApiKeyAuthenticator:
    """Authenticates ``X-API-Key`` against the database, with a short positive cache."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        settings: GatewaySettings,
        clock: Callable[[], float] = time.time,
        audit: AuditSink | None = None,
        *,
        peppers: Peppers | None = None,
        standings: OwnerStandings | None = None,
    ) -> None:
        self._sessions = session_factory
        # None only where no owner exists to ask (unit tests of the key format and store).
        self._standings = standings
        self._peppers = peppers or Peppers.from_settings(settings)
        self._cache_seconds = settings.api_key_cache_seconds
        self._clock = clock
        self._audit = audit
        self._cache: dict[str, _Cached] = {}
        self._last_used: dict[str, float] = {}
        self._rehashed: dict[str, tuple[str, str]] = {}
        self._flush_lock = asyncio.Lock()

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        """The key's Identity, or None without an X-API-Key header.

        Raises AuthenticationError(code="invalid_api_key") for any bad key or an owner who may
        no longer act, and DependencyUnavailable when the database or the owner's standing
        cannot be read.
        """
        value = headers.get(HEADER)
        if value is None:
            value = headers.get("X-API-Key")
        if value is None:
            value = _bearer_key(headers)
        if value is None:
            return None
        now = self._clock()
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
        parsed = parse_key(value)
        if parsed is None:
            raise self._reject(None, "malformed")
        cached = self._cache.get(parsed.key_id)
        fresh = cached is not None and now < cached.valid_until
        if cached is not None and fresh and hmac.compare_digest(cached.digest, digest):
            identity = cached.identity
        else:
            identity, valid_until = await self._verify(parsed, now)
            self._cache[parsed.key_id] = _Cached(digest, identity, valid_until)
        identity = await self._as_owner_allows(identity)
        self._mark_used(identity, now)
        return identity

    async def _as_owner_allows(self, identity: Identity) -> Identity:
        """identity bound to its owner's current roles; raises when the owner may not act."""
        if self._standings is None or identity.owner is None:
            return identity
        standing = await self._standings.get(identity.owner)
        if not standing.may_act:
            reason = "owner_disabled" if standing.exists else "owner_deleted"
            raise self._reject(identity.api_key_id, reason)
        return replace(identity, owner_roles=standing.roles)

    def invalidate(self, key_id: str) -> None:
        """Forget a cached key in this process (after revoking or rotating it)."""
        self._cache.pop(key_id, None)

    async def flush_last_used(self) -> None:
        """Write the last-used times and re-hashed secrets gathered since the last flush.

        On a database error the batch is kept for the next flush (and the error logged).
        """
        async with self._flush_lock:
            if not self._last_used and not self._rehashed:
                return
            last_used, self._last_used = self._last_used, {}
            rehashed, self._rehashed = self._rehashed, {}
            when = {k: datetime.fromtimestamp(t, UTC) for k, t in last_used.items()}
            try:
                async with self._sessions() as session:
                    await store.record_use(session, when, rehashed)
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("could not record API key use: %s", type(exc).__name__)
                for key_id, at in last_used.items():
                    self._last_used[key_id] = max(at, self._last_used.get(key_id, at))
                self._rehashed = {**rehashed, **self._rehashed}

    async def run_periodic_flush(self, interval_seconds: float = 60.0) -> None:
        """Flush every interval until cancelled (start it as a task in the lifespan)."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.flush_last_used()
            except Exception:
                # The next round retries; a bug here must not stop recording use for good.
                logger.exception("flushing API key use failed")

    async def _verify(self, parsed: ParsedKey, now: float) -> tuple[Identity, float]:
        try:
            async with self._sessions() as session:
                row = await store.get_key(session, parsed.key_id)
        except (SQLAlchemyError, OSError) as exc:
            raise DependencyUnavailable("The API key store is unavailable") from exc
        outcome = self._peppers.verify(parsed.secret, row.secret_hash if row else _DUMMY_HASH)
        if row is None:
            raise self._reject(None, "unknown")
        if outcome is None:
            raise self._reject(row.id, "wrong_secret")
        expires_at = store.timestamp(row.expires_at)
        grace_until = store.timestamp(row.grace_until)
        if row.revoked_at is not None:
            raise self._reject(row.id, "revoked")
        if expires_at is not None and expires_at <= now:
            raise self._reject(row.id, "expired")
        if grace_until is not None and grace_until <= now:
            raise self._reject(row.id, "rotated")
        ends = [t for t in (expires_at, grace_until) if t is not None]
        if outcome is False:
            self._rehashed[row.id] = (
                self._peppers.hash(parsed.secret),
                self._peppers.current_version,
            )
        identity = Identity(
            subject=f"apikey:{row.id}",
            method=AuthMethod.API_KEY,
            roles=frozenset(row.roles),
            name=row.name,
            api_key_id=row.id,
            owner=row.owner_sub,
            expires_at=min(ends) if ends else None,
            scopes=frozenset(row.permissions),
        )
        return identity, min([now + self._cache_seconds, *ends])

    def _mark_used(self, identity: Identity, now: float) -> None:
        key_id = identity.api_key_id or ""
        first_in_window = key_id not in self._last_used
        self._last_used[key_id] = now
        if first_in_window:
            self._emit("api_key.used", "success", key_id, None, identity.subject)

    def _reject(self, key_id: str | None, reason: str) -> AuthenticationError:
        self._emit("api_key.rejected", "failure", key_id, reason, None)
        return AuthenticationError("The API key is not valid", code="invalid_api_key")

    def _emit(
        self,
        action: str,
        outcome: Outcome,
        key_id: str | None,
        reason: str | None,
        actor: str | None,
    ) -> None:
        if self._audit is None:
            return
        self._audit.emit(
            AuditEvent(
                action=action,
                outcome=outcome,
                actor=actor,
                target=f"apikey:{key_id}" if key_id else None,
                reason=reason,
            )
        )
