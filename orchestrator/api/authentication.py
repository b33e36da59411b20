"""ASGI middleware: no request reaches a route without a valid gateway assertion.

Only ``/healthz`` and ``/readyz`` are public. Unknown paths answer 401 too, so an anonymous
caller learns nothing about which routes exist.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.resources import Resources
from orchestrator.errors import AuthenticationError, KeysUnavailable
from orchestrator.identity import ASSERTION_HEADER
from orchestrator.logs import set_request_id, well_formed_request_id
from orchestrator.problems import problem_response

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_HEADER = ASSERTION_HEADER.encode()

logger = logging.getLogger(__name__)


class AssertionMiddleware:
    """Verify ``X-MRO-Assertion``; put the Principal in ``scope["state"]["principal"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        resources: Resources = scope["state"]["resources"]
        values = [value for name, value in scope["headers"] if name == _HEADER]
        try:
            if not values:
                raise AuthenticationError(
                    "The request carries no identity assertion", code="missing_assertion"
                )
            if len(values) > 1:
                raise AuthenticationError("The request carries more than one assertion")
            principal = await resources.verifier.verify(values[0].decode("latin-1"))
        except (AuthenticationError, KeysUnavailable) as exc:
            logger.warning("assertion rejected", extra={"code": exc.code, "path": scope["path"]})
            await problem_response(exc)(scope, receive, send)
            return
        scope["state"]["principal"] = principal
        if (rid := well_formed_request_id(principal.rid)) is not None:
            set_request_id(rid)
        await self.app(scope, receive, send)
