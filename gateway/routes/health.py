"""Operations endpoints: ``/healthz`` (the process runs), ``/readyz`` (its dependencies answer),
``/metrics`` (Prometheus).

``/readyz`` has two scopes. The default, ``all``, runs every check (Keycloak's keys, Redis, the
database) and is for people and monitoring. ``/readyz?scope=local`` is for Kubernetes'
readiness probe: it runs only the checks that fail for reasons of this replica alone (it holds
no Keycloak signing keys and cannot fetch them). Redis and the database are shared by every
replica: a probe failing on them would take every replica out of the Service at once, including
the traffic that does not need them. Before its startup is done and once its shutdown has begun
the server does not accept connections (uvicorn listens after the lifespan startup and closes
its socket first on SIGTERM), so the probe fails then without a check of its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from gateway.app_state import ReadinessCheck
from gateway.dependencies import MetricsDep, ServicesDep
from gateway.metrics import CONTENT_TYPE
from gateway.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.problems import TYPE_BASE

__all__ = ["router"]

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
# Readiness checks that fail for reasons of this replica alone (see the module docstring).
LOCAL_CHECKS = frozenset({"jwks"})

Scope = Literal["all", "local"]

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
async def readyz(
    services: ServicesDep,
    scope: Annotated[
        Scope, Query(description="`local`: only what fails for this replica alone (the probe)")
    ] = "all",
) -> Any:
    """200 when Keycloak's keys, Redis and the database answer; 503 with each check's result.
    With ``scope=local`` only the replica's own checks run (Keycloak's keys held)."""
    checks = {
        name: check
        for name, check in services.readiness.items()
        if scope == "all" or name in LOCAL_CHECKS
    }
    results = dict(await asyncio.gather(*(_run(name, check) for name, check in checks.items())))
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
