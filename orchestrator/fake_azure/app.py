"""``create_app``: the local Azure OpenAI server as an ASGI application."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from orchestrator.fake_azure import wire
from orchestrator.fake_azure.completions import ChatCompletions
from orchestrator.fake_azure.control import control_routes
from orchestrator.fake_azure.scenario import Scenario
from orchestrator.fake_azure.settings import FakeAzureSettings


def create_app(settings: FakeAzureSettings, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The server; ``app.state.scenario`` is its script queue and call log."""
    scenario = Scenario()
    completions = ChatCompletions(settings, scenario, clock)
    routes: list[BaseRoute] = [
        Route(
            "/openai/deployments/{deployment}/chat/completions",
            completions.handle,
            methods=["POST"],
        ),
        Route("/healthz", _healthz, methods=["GET"]),
    ]
    if settings.control:
        routes.append(Mount("/_control", routes=control_routes(scenario)))
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.scenario = scenario
    return app


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in Azure's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = "Resource not found" if status == 404 else str(getattr(exc, "detail", "error"))
    return JSONResponse(wire.error_body(message, code=str(status)), status_code=status)
