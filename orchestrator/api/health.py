"""``/healthz`` (the process answers) and ``/readyz`` (database and gateway keys at hand)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from orchestrator.api.dependencies import get_resources
from orchestrator.errors import OrchestratorError
from orchestrator.problems import CONTENT_TYPE, problem_body

router = APIRouter(tags=["health"])


class NotReady(OrchestratorError):
    status = 503
    code = "not_ready"
    title = "Not ready"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    resources = get_resources(request)
    checks: dict[str, str] = {}
    for name, probe in (("database", resources.repository.ping), ("jwks", resources.keys.check)):
        try:
            await probe()
            checks[name] = "ok"
        except OrchestratorError as exc:
            checks[name] = exc.code
    if all(status == "ok" for status in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failed = ", ".join(name for name, status in checks.items() if status != "ok")
    body: dict[str, Any] = problem_body(NotReady(f"Not ready: {failed}"))
    body["checks"] = checks
    return JSONResponse(body, status_code=503, media_type=CONTENT_TYPE)
