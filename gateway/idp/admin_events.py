"""Following changes made to people in Keycloak itself (its console or admin API).

Keycloak pushes nothing to clients when an administrator disables someone, deletes them, resets
their password or takes a role away in its console; it only records an admin event. One replica
at a time (a Redis lease) reads the realm's admin events every ``interval`` seconds with the
gateway's own service account (realm-management role ``view-events``) and turns each change to a
user into a revocation (``gateway.idp.revoker``):

| admin event (resource path under ``users/{id}``) | what the gateway does |
| --- | --- |
| ``UPDATE users/{id}`` (disable, edit), ``DELETE users/{id}`` | revoke |
| ``ACTION users/{id}/logout`` (console: Sign out) | revoke |
| ``ACTION users/{id}/reset-password``, credentials removed | revoke and end Keycloak sessions |
| role or group mapping removed | revoke |
| role or group mapping added | forget the standing (API keys re-read it) |
| mails sent, impersonation, user created | nothing |

Changes the gateway made itself (its service account is the event's author) are skipped: the
gateway revoked at the time it made them. A revocation covers tokens issued until the event's own
time, so replaying an event twice does no more than once.

Where reading stopped is kept in Redis (the newest event's time, and the ids seen at that time),
so another replica that takes the lease goes on from there. With no cursor (first start, Redis
emptied) the follower starts at the newest event: history is never replayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from redis.asyncio import Redis

from gateway.idp.revoker import Revoker
from gateway.idp.users import AdminEvent

__all__ = ["AdminEventFollower", "Change", "classify"]

logger = logging.getLogger(__name__)

_USER_PATH: Final = re.compile(r"^users/([0-9A-Za-z_-]{1,100})(?:/(.*))?$")
_NOTHING_CHANGES: Final = frozenset(
    {"execute-actions-email", "send-verify-email", "reset-password-email", "impersonation"}
)
_MAPPINGS: Final = ("role-mappings", "groups")
_CREDENTIALS: Final = ("reset-password", "credentials", "disable-credential-types")

# KEYS[1]: the lease. ARGV: holder token, milliseconds. 1 when the caller holds it afterwards.
_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Change:
    """What one admin event means for one person."""

    subject: str
    reason: str
    revoke: bool = True
    end_keycloak_sessions: bool = False


def classify(event: AdminEvent) -> Change | None:
    """The change an admin event makes to a person's standing, or None for no change."""
    match = _USER_PATH.match(event.resource_path)
    if match is None:
        return None
    subject, rest = match.group(1), match.group(2) or ""
    operation = event.operation_type
    if not rest:
        if operation == "DELETE":
            return Change(subject, "keycloak.user_deleted")
        if operation == "UPDATE":
            return Change(subject, "keycloak.user_updated")
        return None  # CREATE: a new account holds no credential yet
    first = rest.split("/", 1)[0]
    if first in _NOTHING_CHANGES:
        return None
    if first == "logout":
        return Change(subject, "keycloak.logout")
    if first in _CREDENTIALS:
        return Change(subject, "keycloak.credential_reset", end_keycloak_sessions=True)
    if first in _MAPPINGS:
        if operation == "CREATE":
            return Change(subject, "keycloak.roles_granted", revoke=False)
        return Change(subject, "keycloak.roles_removed")
    return Change(subject, "keycloak.user_changed")


class AdminEventSource(Protocol):
    """Pages of admin events, newest first (``KeycloakAdminClient``)."""

    async def admin_events(self, *, first: int, max_results: int) -> list[AdminEvent]: ...

    async def own_user_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class _Cursor:
    time: int
    seen: frozenset[str]


class AdminEventFollower:
    """Reads Keycloak's admin events and revokes the people they change (see module doc)."""

    def __init__(
        self,
        source: AdminEventSource,
        redis: Redis,
        revoker: Revoker,
        *,
        prefix: str = "mro:",
        interval: float = 1.0,
        page_size: int = 100,
        max_pages: int = 20,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._redis = redis
        self._revoker = revoker
        self._interval = interval
        self._page_size = page_size
        self._max_pages = max_pages
        self._sleep = sleep
        self._monotonic = monotonic
        self._lease_key = f"{prefix}admin-events:lease"
        self._cursor_key = f"{prefix}admin-events:cursor"
        self._lease = redis.register_script(_LEASE)
        self._holder = secrets.token_hex(16)
        self._failing = False

    async def run(self) -> None:
        """Poll until cancelled; failures are logged once per outage and retried."""
        while True:
            started = self._monotonic()
            try:
                await self.poll_once()
                if self._failing:
                    logger.info("following Keycloak's admin events again")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    logger.warning(
                        "cannot follow Keycloak's admin events", extra={"error": type(exc).__name__}
                    )
                self._failing = True
            await self._sleep(max(0.0, self._interval - (self._monotonic() - started)))

    async def poll_once(self) -> int:
        """Read new events if this replica holds the lease; how many changed someone."""
        lease_ms = max(1000, int(self._interval * 3000))
        if not await self._lease(keys=[self._lease_key], args=[self._holder, lease_ms]):
            return 0
        cursor = await self._load_cursor()
        events = await self._newer_than(cursor)
        if cursor is None:
            newest = max((e.time for e in events), default=0)
            start = frozenset(e.key for e in events if e.time == newest)
            await self._save_cursor(_Cursor(newest, start))
            return 0
        fresh = sorted(
            (e for e in events if e.time > cursor.time or e.key not in cursor.seen),
            key=lambda e: e.time,
        )
        if not fresh:
            return 0
        own = await self._source.own_user_id()
        changed = 0
        for event in fresh:
            change = classify(event)
            author = event.auth_details.user_id if event.auth_details else None
            if change is None or (own is not None and author == own):
                continue
            if change.revoke:
                await self._revoker.revoke(
                    change.subject,
                    change.reason,
                    at=event.time / 1000,
                    actor=author,
                    end_keycloak_sessions=change.end_keycloak_sessions,
                )
            else:
                await self._revoker.standing_changed(change.subject)
            changed += 1
        newest = fresh[-1].time
        seen: set[str] = {e.key for e in fresh if e.time == newest}
        if cursor.time == newest:
            seen |= cursor.seen
        await self._save_cursor(_Cursor(newest, frozenset(seen)))
        return changed

    async def _newer_than(self, cursor: _Cursor | None) -> Sequence[AdminEvent]:
        """Events at or after the cursor's time (the newest page alone without a cursor)."""
        found: dict[str, AdminEvent] = {}
        for page in range(self._max_pages):
            batch = await self._source.admin_events(
                first=page * self._page_size, max_results=self._page_size
            )
            for event in batch:
                if cursor is None or event.time >= cursor.time:
                    found.setdefault(event.key, event)
            if cursor is None or len(batch) < self._page_size or batch[-1].time < cursor.time:
                break
        else:
            logger.warning("more admin events than one poll reads; the oldest are skipped")
        return list(found.values())

    async def _load_cursor(self) -> _Cursor | None:
        raw = await self._redis.get(self._cursor_key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return _Cursor(int(data["time"]), frozenset(str(k) for k in data["seen"]))
        except (ValueError, KeyError, TypeError):
            return None

    async def _save_cursor(self, cursor: _Cursor) -> None:
        await self._redis.set(
            self._cursor_key, json.dumps({"time": cursor.time, "seen": sorted(cursor.seen)})
        )
