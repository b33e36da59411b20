"""``GET /api/admin/audit``: the audit log, newest first (permission ``audit:read``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gateway.audit.events import AuditEvent
from gateway.dependencies import AuditStoreDep, CurrentIdentity
from gateway.errors import BadRequest

__all__ = ["router"]

router = APIRouter(prefix="/api/admin", tags=["admin"])


class AuditEventOut(BaseModel):
    event_id: str
    at: datetime
    action: str
    outcome: str
    actor: str | None
    target: str | None
    reason: str | None
    request_id: str | None
    client_ip: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            event_id=event.event_id,
            at=event.at,
            action=event.action,
            outcome=event.outcome,
            actor=event.actor,
            target=event.target,
            reason=event.reason,
            request_id=event.request_id,
            client_ip=event.client_ip,
            details=event.details,
        )


class AuditPage(BaseModel):
    items: list[AuditEventOut]


@router.get("/audit")
async def list_audit_events(
    caller: CurrentIdentity,
    store: AuditStoreDep,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+(\.\*)?$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Events filtered by actor, action (``api_key.*`` for a family) and time (``since`` ≤ at <
    ``until``), newest first."""
    if since is not None and until is not None and since >= until:
        raise BadRequest("since must be before until.", code="bad_time_range")
    events = await store.query(actor=actor, action=action, since=since, until=until, limit=limit)
    return AuditPage(items=[AuditEventOut.of(event) for event in events])
