"""Storage of browser sessions in Redis: records, indexes for logout, refresh locks.

Layout (``prefix`` defaults to ``mro:``); only the SHA-256 of a session id is stored, so reading
Redis does not yield cookies that work:

* ``session:<hash>``: the ``SessionRecord`` as JSON, expiring at the idle or absolute limit;
* ``session-lock:<hash>``: the refresh lock (``SET NX PX``, value = the owner's random token);
* ``sid:<Keycloak sid>`` and ``sub:<subject>``: sets of session hashes, for back-channel logout.

Every write of a record is a compare-and-set on its ``version`` (the fencing token of the refresh
lock). Redis errors become ``DependencyUnavailable`` here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.browser.oidc import TokenSet
from gateway.errors import DependencyUnavailable
from gateway.identity import AuthMethod, Identity

__all__ = ["SessionRecord", "SessionStore", "session_key"]

# Write the record only while its version is still the one the writer read.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if cjson.decode(current)['version'] ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One browser session as stored: who, the tokens, and the timestamps of its limits."""

    subject: str
    username: str
    name: str
    email: str
    roles: tuple[str, ...]
    sid: str | None
    access_token: str
    access_expires_at: float
    refresh_token: str | None
    refresh_expires_at: float | None
    id_token: str | None
    created_at: float
    last_seen_at: float
    csrf_token: str
    version: int = 0

    @classmethod
    def new(cls, identity: Identity, tokens: TokenSet, now: float) -> SessionRecord:
        return cls(
            subject=identity.subject,
            username=identity.username,
            name=identity.name,
            email=identity.email,
            roles=tuple(sorted(identity.roles)),
            sid=identity.session_id,
            created_at=now,
            last_seen_at=now,
            csrf_token=secrets.token_urlsafe(32),
            **_token_fields(tokens, now, None),
        )

    def refreshed(self, identity: Identity, tokens: TokenSet, now: float) -> SessionRecord:
        """The record after a refresh: new tokens and roles, next version."""
        return dataclasses.replace(
            self,
            roles=tuple(sorted(identity.roles)),
            last_seen_at=now,
            version=self.version + 1,
            **_token_fields(tokens, now, self),
        )

    def expires_at(self, idle_seconds: float, max_seconds: float) -> float:
        """When the idle or the absolute limit ends the session."""
        return min(self.last_seen_at + idle_seconds, self.created_at + max_seconds)

    def identity(self) -> Identity:
        return Identity(
            subject=self.subject,
            method=AuthMethod.SESSION,
            roles=frozenset(self.roles),
            username=self.username,
            name=self.name,
            email=self.email,
            session_id=self.sid,
            expires_at=self.access_expires_at,
        )

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: bytes | str) -> SessionRecord | None:
        """The record in raw, or None when it is not one (treated as no session)."""
        try:
            data = json.loads(raw)
            data["roles"] = tuple(data["roles"])
            return cls(**data)
        except (ValueError, TypeError, KeyError):
            return None


def _token_fields(tokens: TokenSet, now: float, old: SessionRecord | None) -> dict[str, Any]:
    refresh_expires = now + tokens.refresh_expires_in if tokens.refresh_expires_in else None
    return {
        "access_token": tokens.access_token,
        "access_expires_at": now + tokens.expires_in,
        "refresh_token": tokens.refresh_token or (old.refresh_token if old else None),
        "refresh_expires_at": refresh_expires or (old.refresh_expires_at if old else None),
        "id_token": tokens.id_token or (old.id_token if old else None),
    }


def session_key(session_id: str) -> str:
    """The storage key of a session id (its SHA-256, hex)."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


@contextlib.contextmanager
def _storage() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise DependencyUnavailable("Session storage is unavailable.") from exc


class SessionStore:
    """Session records, their indexes and refresh locks in Redis. Raises DependencyUnavailable."""

    def __init__(self, redis: Redis, prefix: str = "mro:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._cas = redis.register_script(_COMPARE_AND_SET)
        self._unlock = redis.register_script(_UNLOCK)

    def _k(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}:{name}"

    async def create(self, record: SessionRecord, ttl: float, max_seconds: int) -> str:
        """Store record under a new random id (256 bits) and return the id."""
        session_id = secrets.token_urlsafe(32)
        key = session_key(session_id)
        with _storage():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._k("session", key), record.dumps(), px=_ms(ttl), nx=True)
                for index in self._indexes(record):
                    pipe.sadd(index, key)
                    pipe.expire(index, max_seconds)
                await pipe.execute()
        return session_id

    async def load(self, key: str) -> SessionRecord | None:
        with _storage():
            raw = await self._redis.get(self._k("session", key))
        return None if raw is None else SessionRecord.loads(raw)

    async def save(
        self, key: str, record: SessionRecord, expected_version: int, ttl: float
    ) -> bool:
        """Write record if the stored one still has expected_version; False otherwise."""
        with _storage():
            done = await self._cas(
                keys=[self._k("session", key)], args=[record.dumps(), expected_version, _ms(ttl)]
            )
        return bool(done)

    async def delete(self, key: str, record: SessionRecord | None) -> None:
        with _storage():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._k("session", key))
                for index in self._indexes(record) if record else ():
                    pipe.srem(index, key)
                await pipe.execute()

    async def delete_indexed(self, kind: str, name: str) -> int:
        """Delete every session in index kind (``sid`` or ``sub``); how many existed."""
        index = self._k(kind, name)
        with _storage():
            keys = await self._redis.smembers(index)
            names = [self._k("session", _text(key)) for key in keys]
            deleted = await self._redis.delete(*names) if names else 0
            await self._redis.delete(index)
        return int(deleted)

    async def lock(self, key: str, seconds: float) -> str | None:
        """The owner token of a fresh refresh lock on key, or None when it is held."""
        token = secrets.token_hex(16)
        with _storage():
            taken = await self._redis.set(
                self._k("session-lock", key), token, px=_ms(seconds), nx=True
            )
        return token if taken else None

    async def locked(self, key: str) -> bool:
        with _storage():
            return bool(await self._redis.exists(self._k("session-lock", key)))

    async def unlock(self, key: str, token: str) -> None:
        with _storage():
            await self._unlock(keys=[self._k("session-lock", key)], args=[token])

    def _indexes(self, record: SessionRecord) -> list[str]:
        indexes = [self._k("sub", record.subject)]
        if record.sid:
            indexes.append(self._k("sid", record.sid))
        return indexes


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
