"""What the pipeline learned about one request, kept in the ASGI scope for later steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from gateway.identity import Identity

__all__ = ["RequestContext", "current_context"]

_KEY = "gateway.edge.request_context"


@dataclass(slots=True)
class RequestContext:
    """Request id, client address and, once known, the route template and the caller."""

    request_id: str
    client_ip: str
    route: str | None = None
    identity: Identity | None = None

    def attach(self, scope: Scope) -> None:
        """Store this context in scope's state (shared with Starlette's ``request.state``)."""
        state: dict[str, Any] = scope.setdefault("state", {})
        state[_KEY] = self


def current_context(scope: Scope) -> RequestContext | None:
    """The context the pipeline attached to scope, if any."""
    state = scope.get("state")
    if not state:
        return None
    context = state.get(_KEY)
    return context if isinstance(context, RequestContext) else None
