"""``GET /api/admin/usage``: who used how many model tokens on which agent (``usage:read``).

The report sums the ``token_usage`` rows from ``from`` to ``to`` (UTC days, both included;
default: this month so far), optionally for one ``subject``, ``agent`` or ``kind``, grouped by
``group_by`` (comma-separated among subject, agent, day, kind, tier; default ``subject,agent``).
Usage this replica has not written yet is written first; other replicas write theirs within a
second or so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway.budgets.usage_store import GROUPS, UsageRecorder, UsageStore
from gateway.dependencies import CurrentIdentity
from gateway.errors import BadRequest, DependencyUnavailable

__all__ = ["UsageItem", "UsageReport", "create_router"]

MAX_DAYS = 366


class UsageItem(BaseModel):
    """One group of the report; the columns not grouped by are absent."""

    subject: str | None = None
    kind: str | None = None
    label: str | None = None
    agent: str | None = None
    day: date | None = None
    tier: str | None = None
    requests: int
    unmetered: int = Field(description="Answers without reported usage, charged as reserved.")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    charged_tokens: int = Field(description="Tokens counted against budgets (agent weights).")


class UsageReport(BaseModel):
    from_: date = Field(alias="from")
    to: date
    group_by: str
    requests: int
    total_tokens: int
    charged_tokens: int
    items: list[UsageItem]


def get_usage_store(request: Request) -> UsageStore:
    store: UsageStore = request.app.state.usage_store
    return store


def get_usage_recorder(request: Request) -> UsageRecorder:
    recorder: UsageRecorder = request.app.state.usage_recorder
    return recorder


def _groups(text: str) -> list[str]:
    groups = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or len(set(groups)) != len(groups):
        raise BadRequest(
            f"group_by takes distinct names among {', '.join(GROUPS)}.", code="bad_group_by"
        )
    return groups


def create_router(clock: Callable[[], float] = time.time) -> APIRouter:
    """The usage report route; clock decides what "this month" is."""
    router = APIRouter(prefix="/api/admin", tags=["admin"])

    @router.get("/usage", response_model=UsageReport, response_model_exclude_none=True)
    async def usage_report(
        caller: CurrentIdentity,
        store: Annotated[UsageStore, Depends(get_usage_store)],
        recorder: Annotated[UsageRecorder, Depends(get_usage_recorder)],
        first: Annotated[date | None, Query(alias="from")] = None,
        last: Annotated[date | None, Query(alias="to")] = None,
        subject: Annotated[str | None, Query(max_length=255)] = None,
        agent: Annotated[str | None, Query(max_length=64)] = None,
        kind: Annotated[str | None, Query(pattern=r"^(user|service|api_key)$")] = None,
        group_by: Annotated[str, Query(max_length=64)] = "subject,agent",
    ) -> UsageReport:
        """Token usage per group, largest total first."""
        today = datetime.fromtimestamp(clock(), UTC).date()
        first = first or today.replace(day=1)
        last = last or today
        if first > last or (last - first).days >= MAX_DAYS:
            raise BadRequest(
                f"from must not be after to, and the range at most {MAX_DAYS} days.",
                code="bad_date_range",
            )
        groups = _groups(group_by)
        await recorder.flush()
        try:
            rows = await store.report(
                first=first, last=last, group_by=groups, subject=subject, agent=agent, kind=kind
            )
        except Exception as exc:
            raise DependencyUnavailable("Usage cannot be read right now.") from exc
        items = [UsageItem.model_validate(row, from_attributes=True) for row in rows]
        return UsageReport.model_validate(
            {
                "from": first,
                "to": last,
                "group_by": ",".join(groups),
                "requests": sum(i.requests for i in items),
                "total_tokens": sum(i.total_tokens for i in items),
                "charged_tokens": sum(i.charged_tokens for i in items),
                "items": items,
            }
        )

    return router
