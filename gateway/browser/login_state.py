"""One-time server-side state of the browser login, in Redis.

* ``login:<sha256(state)>``: a ``PendingLogin`` (nonce, PKCE verifier, return path, browser
  binding) from ``/auth/login`` until its callback takes it, at most ``ttl`` seconds. ``take``
  reads and deletes in one step (``GETDEL``), so a state works once even when two callbacks race.
* ``logout-jti:<sha256(jti)>``: the ids of back-channel logout tokens already processed
  (``SET NX``), kept as long as such a token could still verify.

Only hashes of the state and of the browser binding are stored. Redis errors become
``DependencyUnavailable``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import DependencyUnavailable

__all__ = ["LoginStates", "PendingLogin", "digest", "safe_return_path"]

MAX_RETURN_PATH = 2048


def digest(value: str) -> str:
    """SHA-256 of value, hex (how states, bindings and jtis are stored)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def safe_return_path(value: str | None) -> str:
    """value when it is a path on this origin (``/…``, not ``//…`` or ``/\\…``), else ``/``."""
    if not value or len(value) > MAX_RETURN_PATH or not value.startswith("/"):
        return "/"
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    decoded = unquote(value)
    if value.startswith("//") or decoded.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """What the callback needs to finish one login; never sent to the browser."""

    nonce: str
    code_verifier: str
    return_to: str
    binding: str  # digest of the login cookie of the browser that started the login


class LoginStates:
    """Pending logins keyed by their state, and seen logout-token ids."""

    def __init__(self, redis: Redis, *, ttl_seconds: int, prefix: str = "mro:") -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._prefix = prefix

    def key(self, state: str) -> str:
        """The Redis key of a state's pending login."""
        return f"{self._prefix}login:{digest(state)}"

    async def put(self, state: str, pending: PendingLogin) -> None:
        try:
            await self._redis.set(self.key(state), json.dumps(asdict(pending)), ex=self._ttl)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("Login state storage is unavailable.") from exc

    async def take(self, state: str) -> PendingLogin | None:
        """The pending login of state, removed; None when unknown, used or expired."""
        try:
            raw = await self._redis.getdel(self.key(state))
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("Login state storage is unavailable.") from exc
        if raw is None:
            return None
        try:
            return PendingLogin(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    async def first_use(self, jti: str, ttl_seconds: int) -> bool:
        """True the first time a logout token id is seen within ttl_seconds."""
        try:
            fresh = await self._redis.set(
                f"{self._prefix}logout-jti:{digest(jti)}", b"1", ex=ttl_seconds, nx=True
            )
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("Login state storage is unavailable.") from exc
        return bool(fresh)
