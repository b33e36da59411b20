"""Admin API for API keys: ``/api/admin/api-keys`` (create, list, show, rotate, revoke).

A key's secret is returned once, in the answer that creates it; lists never show a secret or a
hash. A caller may only give a key permissions it holds itself, and only an ``admin`` may give
a key a role other than ``service``; rotating a key needs the same rights as creating it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.audit.events import AuditEvent
from gateway.auth import api_key_store as store
from gateway.auth.api_keys import Peppers, generate_key
from gateway.dependencies import Audit, CurrentIdentity, DbSessions, SettingsDep
from gateway.edge.request_context import current_context
from gateway.errors import Conflict, NotFound, PermissionDenied
from gateway.identity import Identity

__all__ = ["ApiKeyOut", "CreateKeyRequest", "CreatedKey", "RotateKeyRequest", "create_router"]

MANAGE: str = "api-keys:manage"
DEFAULT_ROLES: tuple[str, ...] = ("service",)
UNPRIVILEGED_ROLES = frozenset(DEFAULT_ROLES)

KeyId = Annotated[str, Path(pattern=r"^[0-9A-Za-z]{12,64}$")]
Status = Literal["active", "expired", "revoked", "rotated"]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    permissions: list[str] = Field(min_length=1, max_length=100)
    roles: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLES), max_length=10)
    expires_in_days: int = Field(default=90, ge=1, le=365)


class RotateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_hours: int = Field(default=24, ge=0, le=168)
    expires_in_days: int | None = Field(default=None, ge=1, le=365)


class ApiKeyOut(BaseModel):
    """A key as listed: no secret, no hash."""

    id: str
    name: str
    owner_sub: str
    owner_name: str
    permissions: list[str]
    roles: list[str]
    status: Status
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None
    replaced_by: str | None
    grace_until: datetime | None

    @classmethod
    def of(cls, row: store.ApiKey, now: datetime) -> ApiKeyOut:
        return cls(
            id=row.id,
            name=row.name,
            owner_sub=row.owner_sub,
            owner_name=row.owner_name,
            permissions=list(row.permissions),
            roles=list(row.roles),
            status=_status(row, now),
            created_at=store.as_utc(row.created_at) or now,
            expires_at=store.as_utc(row.expires_at),
            revoked_at=store.as_utc(row.revoked_at),
            last_used_at=store.as_utc(row.last_used_at),
            rotated_from=row.rotated_from,
            replaced_by=row.replaced_by,
            grace_until=store.as_utc(row.grace_until),
        )


class CreatedKey(ApiKeyOut):
    """A key just created or rotated, with its one and only showing of ``key``."""

    key: str


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


def _status(row: store.ApiKey, now: datetime) -> Status:
    if row.revoked_at is not None:
        return "revoked"
    expires_at, grace_until = store.as_utc(row.expires_at), store.as_utc(row.grace_until)
    if expires_at is not None and expires_at <= now:
        return "expired"
    if grace_until is not None and grace_until <= now:
        return "rotated"
    return "active"


def _require_grant(caller: Identity, permissions: list[str], roles: list[str]) -> None:
    """Raise PermissionDenied unless caller may issue a key with these permissions and roles."""
    if MANAGE not in caller.permissions:
        raise PermissionDenied("Managing API keys needs api-keys:manage")
    missing = sorted(set(permissions) - caller.permissions)
    if missing:
        raise PermissionDenied(
            f"You cannot grant permissions you do not hold: {', '.join(missing)}",
            code="api_key_permission_not_held",
        )
    if not set(roles) <= UNPRIVILEGED_ROLES and "admin" not in caller.roles:
        raise PermissionDenied(
            "Only an admin can give a key a role other than 'service'",
            code="api_key_role_not_allowed",
        )


def create_router(
    *,
    clock: Callable[[], float] = time.time,
    on_key_changed: Callable[[str], None] | None = None,
) -> APIRouter:
    """The admin router; on_key_changed(key_id) runs after a revocation or rotation (cache drop)."""
    router = APIRouter(prefix="/api/admin/api-keys", tags=["api-keys"])

    def now() -> datetime:
        return datetime.fromtimestamp(clock(), UTC)

    def audit(
        sink: Audit, request: Request, caller: Identity, action: str, target: str, **details: Any
    ) -> None:
        context = current_context(request.scope)
        sink.emit(
            AuditEvent(
                action=action,
                outcome="success",
                actor=caller.subject,
                target=f"apikey:{target}",
                request_id=context.request_id if context else None,
                client_ip=context.client_ip if context else None,
                details=details,
            )
        )

    def changed(key_id: str) -> None:
        if on_key_changed is not None:
            on_key_changed(key_id)

    def new_row(
        caller: Identity, peppers: Peppers, source: CreateKeyRequest | store.ApiKey, days: int
    ) -> tuple[store.ApiKey, str]:
        generated = generate_key()
        created = now()
        row = store.ApiKey(
            id=generated.key_id,
            name=source.name,
            owner_sub=caller.owner or caller.subject,
            owner_name=caller.name or caller.username,
            permissions=sorted(set(source.permissions)),
            roles=sorted(set(source.roles)),
            secret_hash=peppers.hash(generated.secret),
            pepper_version=peppers.current_version,
            created_at=created,
            expires_at=created + timedelta(days=days),
        )
        return row, generated.token

    @router.post("", status_code=status.HTTP_201_CREATED)
    async def create_key(
        body: CreateKeyRequest,
        caller: CurrentIdentity,
        sessions: DbSessions,
        settings: SettingsDep,
        sink: Audit,
        request: Request,
        response: Response,
    ) -> CreatedKey:
        """Issue a key; the answer shows it once."""
        _require_grant(caller, body.permissions, body.roles)
        row, token = new_row(caller, Peppers.from_settings(settings), body, body.expires_in_days)
        async with sessions() as session:
            await store.save(session, row)
        audit(
            sink,
            request,
            caller,
            "api_key.created",
            row.id,
            name=row.name,
            permissions=row.permissions,
            roles=row.roles,
        )
        response.headers["Cache-Control"] = "no-store"
        return CreatedKey(**ApiKeyOut.of(row, now()).model_dump(), key=token)

    @router.get("")
    async def list_keys(
        caller: CurrentIdentity, sessions: DbSessions, owner: str | None = None
    ) -> ApiKeyList:
        """Every key (or one owner's), newest first, without secrets."""
        _require_grant(caller, [], [])
        async with sessions() as session:
            rows = await store.list_keys(session, owner)
        moment = now()
        return ApiKeyList(items=[ApiKeyOut.of(row, moment) for row in rows])

    async def load(sessions: DbSessions, key_id: str) -> store.ApiKey:
        async with sessions() as session:
            row = await store.get_key(session, key_id)
        if row is None:
            raise NotFound("No such API key", code="api_key_not_found")
        return row

    @router.get("/{key_id}")
    async def show_key(caller: CurrentIdentity, sessions: DbSessions, key_id: KeyId) -> ApiKeyOut:
        """One key, without its secret."""
        _require_grant(caller, [], [])
        return ApiKeyOut.of(await load(sessions, key_id), now())

    @router.post("/{key_id}/rotate", status_code=status.HTTP_201_CREATED)
    async def rotate_key(
        caller: CurrentIdentity,
        sessions: DbSessions,
        settings: SettingsDep,
        sink: Audit,
        request: Request,
        response: Response,
        key_id: KeyId,
        body: RotateKeyRequest | None = None,
    ) -> CreatedKey:
        """Replace a key; the old one keeps working for grace_hours, then stops."""
        options = body or RotateKeyRequest()
        old = await load(sessions, key_id)
        _require_grant(caller, list(old.permissions), list(old.roles))
        if _status(old, now()) != "active" or old.replaced_by is not None:
            raise Conflict("Only an active key that was not rotated yet can be rotated")
        lifetime = (store.as_utc(old.expires_at) or now()) - (store.as_utc(old.created_at) or now())
        days = options.expires_in_days or max(1, min(365, lifetime.days))
        new, token = new_row(caller, Peppers.from_settings(settings), old, days)
        new.rotated_from = old.id
        old.replaced_by = new.id
        old.grace_until = now() + timedelta(hours=options.grace_hours)
        async with sessions() as session:
            await store.save(session, new, old)
        changed(old.id)
        audit(
            sink,
            request,
            caller,
            "api_key.rotated",
            old.id,
            new_id=new.id,
            grace_until=old.grace_until.isoformat(),
        )
        response.headers["Cache-Control"] = "no-store"
        return CreatedKey(**ApiKeyOut.of(new, now()).model_dump(), key=token)

    async def revoke(
        caller: Identity, sessions: DbSessions, sink: Audit, request: Request, key_id: str
    ) -> store.ApiKey:
        _require_grant(caller, [], [])
        row = await load(sessions, key_id)
        if row.revoked_at is None:
            row.revoked_at = now()
            async with sessions() as session:
                await store.save(session, row)
            audit(sink, request, caller, "api_key.revoked", row.id)
        changed(row.id)
        return row

    @router.post("/{key_id}/revoke")
    async def revoke_key(
        caller: CurrentIdentity, sessions: DbSessions, sink: Audit, request: Request, key_id: KeyId
    ) -> ApiKeyOut:
        """Revoke a key now (idempotent)."""
        return ApiKeyOut.of(await revoke(caller, sessions, sink, request, key_id), now())

    @router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_key(
        caller: CurrentIdentity, sessions: DbSessions, sink: Audit, request: Request, key_id: KeyId
    ) -> None:
        """Same as revoke; the row stays for the audit trail."""
        await revoke(caller, sessions, sink, request, key_id)

    return router
