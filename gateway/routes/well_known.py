"""``/.well-known/jwks.json``: the public keys of the gateway's identity assertions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from gateway.dependencies import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/.well-known/jwks.json")
async def jwks(services: ServicesDep, response: Response) -> dict[str, Any]:
    """The keys the orchestrator verifies ``X-MRO-Assertion`` with."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return services.signer.jwks()
