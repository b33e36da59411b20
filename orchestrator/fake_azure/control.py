"""The ``/_control`` API: script answers and faults, read recorded calls, reset.

| method and path | body | effect |
| --- | --- | --- |
| ``POST /_control/responses`` | ``Script`` + ``repeat`` | the next ``repeat`` calls play it |
| ``POST /_control/faults`` | ``Fault`` + ``count`` | the next ``count`` calls play the fault |
| ``GET /_control/calls`` | | ``{"calls": [RecordedCall...], "pending": n}`` |
| ``GET /_control/usage`` | | ``{"usage": [RecordedUsage...]}``: the usage each answer carried |
| ``POST /_control/reset`` | | forget scripts and calls |

Scripts and faults share one queue, consumed in order, one per chat completions call.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.fake_azure import wire
from orchestrator.fake_azure.scenario import Fault, FaultRequest, QueueRequest, Scenario, Script

M = TypeVar("M", bound=BaseModel)


def control_routes(scenario: Scenario) -> list[Route]:
    """The routes to mount under ``/_control``."""

    async def queue_response(request: Request) -> Response:
        parsed = await _read(request, QueueRequest)
        if isinstance(parsed, Response):
            return parsed
        script = Script.model_validate(parsed.model_dump(exclude={"repeat"}))
        scenario.push(script, parsed.repeat)
        return JSONResponse({"pending": scenario.pending}, status_code=201)

    async def inject_fault(request: Request) -> Response:
        parsed = await _read(request, FaultRequest)
        if isinstance(parsed, Response):
            return parsed
        fault = Fault.model_validate(parsed.model_dump(exclude={"count"}))
        scenario.push(Script(fault=fault), parsed.count)
        return JSONResponse({"pending": scenario.pending}, status_code=201)

    async def list_calls(request: Request) -> Response:
        calls = [call.model_dump(mode="json") for call in scenario.calls]
        return JSONResponse({"calls": calls, "pending": scenario.pending})

    async def list_usage(request: Request) -> Response:
        usage = [item.model_dump(mode="json") for item in scenario.usage]
        return JSONResponse({"usage": usage})

    async def reset(request: Request) -> Response:
        scenario.reset()
        return Response(status_code=204)

    return [
        Route("/responses", queue_response, methods=["POST"]),
        Route("/faults", inject_fault, methods=["POST"]),
        Route("/calls", list_calls, methods=["GET"]),
        Route("/usage", list_usage, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
    ]


async def _read(request: Request, model: type[M]) -> M | Response:
    """The validated body, or a 422 answer naming what is wrong."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in details)
        body = wire.error_body(message or "invalid body", code="invalid_control_request")
        return JSONResponse(body, status_code=422)
