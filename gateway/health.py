"""Operations endpoints: ``/healthz`` (the process runs), ``/readyz`` (its dependencies answer),
``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from gateway.dependencies import MetricsDep, ServicesDep
from gateway.metrics import CONTENT_TYPE
from gateway.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.problems import TYPE_BASE
from gateway.services import ReadinessCheck

__all__ = ["router"]

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, bool]


@router.get("/healthz")
async def healthz() -> Health:
    """Answers while the process runs."""
    return Health(status="ok")


async def _run(name: str, check: ReadinessCheck) -> tuple[str, bool]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return name, bool(await check())
    except Exception as exc:
        logger.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
        return name, False


@router.get(
    "/readyz",
    responses={503: {"description": "A dependency does not answer (problem+json with checks)"}},
)
async def readyz(services: ServicesDep) -> Any:
    """200 when Keycloak's keys, Redis and the database answer; 503 with each check's result."""
    results = dict(
        await asyncio.gather(*(_run(name, check) for name, check in services.readiness.items()))
    )
    if all(results.values()):
        return Readiness(status="ready", checks=results)
    failed = ", ".join(name for name, ok in results.items() if not ok)
    return JSONResponse(
        {
            "type": TYPE_BASE + "not_ready",
            "title": "Not ready",
            "status": 503,
            "detail": f"Not answering: {failed}.",
            "code": "not_ready",
            "checks": results,
        },
        status_code=503,
        media_type=PROBLEM_CONTENT_TYPE,
    )


@router.get("/metrics", response_class=Response)
async def metrics(values: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(values.render(), media_type=CONTENT_TYPE)
