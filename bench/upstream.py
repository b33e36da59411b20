"""The benchmark's upstream: a bare ASGI app that answers as fast as uvicorn allows.

Routes:
  GET  /json  a small JSON document (the typical orchestrator answer size of a status call)
  POST /echo  reads the whole body and answers with its length as JSON
  GET  /sse   a text/event-stream of SSE_EVENTS events, each sent as its own body chunk
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SSE_EVENTS = 20
JSON_BODY = json.dumps(
    {"status": "ok", "service": "upstream", "items": [1, 2, 3], "note": "small body"}
).encode()
JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(JSON_BODY)).encode()),
]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
NOT_FOUND = b'{"error":"not found"}'


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> int:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size


async def _sse(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    for index in range(SSE_EVENTS):
        chunk = b'data: {"delta": "token %d"}\n\n' % index
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve the three benchmark routes; everything else is a 404."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/json":
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": JSON_BODY})
    elif method == "POST" and path == "/echo":
        size = await _read_body(receive)
        await _answer(send, 200, b'{"received":%d}' % size)
    elif method == "GET" and path == "/sse":
        await _sse(send)
    else:
        await _answer(send, 404, NOT_FOUND)


def main() -> None:
    """Run the upstream under uvicorn on loopback."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Proxies idle between benchmark rounds; keep their pooled connections open meanwhile.
        timeout_keep_alive=300,
    )


if __name__ == "__main__":
    main()
