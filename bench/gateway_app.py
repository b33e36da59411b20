"""uvicorn factory for the gateway benchmark: ``uvicorn gateway_app:app --factory``.

The same app ``python -m gateway`` serves (settings from ``MRO_GATEWAY_*``, JSON logs), built by a
factory so that uvicorn's ``--workers`` can start several processes. With ``BENCH_PROFILE_FILE``
set, cProfile runs from the first HTTP request until shutdown and writes its stats there, so the
profile holds request handling only, not the imports and start-up before it.
"""

from __future__ import annotations

import cProfile
import os
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.app import create_app
from gateway.logging import configure_logging
from gateway.settings import GatewaySettings


class _Profiled:
    """Profiles the wrapped app from its first HTTP request to the lifespan's shutdown."""

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self._app = app
        self._path = path
        self._profiler = cProfile.Profile()
        self._running = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._running:
            self._running = True
            self._profiler.enable()
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return

        async def receive_and_dump() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self._running:
                self._profiler.disable()
                self._running = False
                self._profiler.dump_stats(str(self._path))
            return message

        await self._app(scope, receive_and_dump, send)


def app() -> ASGIApp:
    """The gateway for the settings in the environment (profiled if asked)."""
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    gateway = create_app(settings)
    target = os.environ.get("BENCH_PROFILE_FILE")
    return _Profiled(gateway, Path(target)) if target else gateway
