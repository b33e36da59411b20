"""A minimal reverse proxy as a bare ASGI app: one shared client, request and answer streamed."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from forwarders import FACTORIES, Forwarder, Outgoing, end_to_end

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

BAD_GATEWAY = b'{"error":"upstream unavailable"}'


class ClientDisconnected(Exception):
    """The downstream client went away while its body was being forwarded."""


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in headers)


async def _lifespan(forwarder: Forwarder, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await forwarder.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await forwarder.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(forwarder: Forwarder, upstream: str) -> App:
    """Build the proxy app forwarding every HTTP request to ``upstream`` through ``forwarder``."""
    base = upstream.rstrip("/")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(forwarder, receive, send)
            return
        if scope["type"] != "http":
            return
        query = scope.get("query_string", b"")
        url = base + scope["path"] + ("?" + query.decode("latin-1") if query else "")
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        body = _body(receive) if _has_body(headers) else None
        request = Outgoing(scope["method"], url, end_to_end(headers), body)
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await forwarder.forward(request, tracked_send)
        except ClientDisconnected:
            return
        except Exception:
            if started:
                raise  # mid-stream: uvicorn aborts the connection, wrk counts a read error
            headers_out = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 502, "headers": headers_out})
            await send({"type": "http.response.body", "body": BAD_GATEWAY})

    return app


def main() -> None:
    """Run one proxy variant under uvicorn (uvloop + httptools, one worker) on loopback."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", choices=sorted(FACTORIES), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8001")
    args = parser.parse_args()
    app = create_app(FACTORIES[args.client](), args.upstream)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
        # The upstream's Server and Date headers are forwarded; do not add a second pair.
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
