"""The HTTP clients under test, each behind the same small forwarding interface.

Every forwarder owns ONE pooled client, opened in ``start`` (the proxy's lifespan) and shared by
all requests. Pools are sized alike (POOL_SIZE connections, all kept alive) so that the libraries,
not their differing default pool limits, are compared; ``httpx-defaults`` keeps httpx's own
defaults (20 keep-alive connections) to show what they cost at 32 concurrent clients.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

POOL_SIZE = 100
KEEPALIVE_SECONDS = 30.0
TIMEOUT_SECONDS = 30.0
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)


@dataclass(frozen=True)
class Outgoing:
    """One request to forward: the upstream URL, end-to-end headers and an optional body."""

    method: str
    url: str
    headers: RawHeaders
    body: AsyncIterator[bytes] | None


class Forwarder(Protocol):
    """Sends a request upstream and streams the answer to an ASGI ``send``."""

    async def start(self) -> None:
        """Open the shared client."""

    async def aclose(self) -> None:
        """Close the shared client and its pool."""

    async def forward(self, request: Outgoing, send: Send) -> None:
        """Forward ``request`` and stream status, headers and body through ``send``."""


def end_to_end(headers: RawHeaders) -> RawHeaders:
    """Drop hop-by-hop headers, which belong to one connection only."""
    return [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]


async def _stream_out(send: Send, status: int, headers: RawHeaders, chunks: Any) -> None:
    await send({"type": "http.response.start", "status": status, "headers": end_to_end(headers)})
    async for chunk in chunks:
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


class HttpxStyleForwarder:
    """httpx 0.28 or httpx2 (same API), optionally on the aiohttp transport of httpx-aiohttp."""

    def __init__(self, module: str, aiohttp_transport: bool, library_defaults: bool) -> None:
        self._module = module
        self._aiohttp_transport = aiohttp_transport
        self._library_defaults = library_defaults
        self._client: Any = None

    async def start(self) -> None:
        httpx: Any = importlib.import_module(self._module)
        options: dict[str, Any] = {"timeout": TIMEOUT_SECONDS, "trust_env": False}
        limits = httpx.Limits(
            max_connections=POOL_SIZE,
            max_keepalive_connections=POOL_SIZE,
            keepalive_expiry=KEEPALIVE_SECONDS,
        )
        if not self._library_defaults:
            options["limits"] = limits
        if self._aiohttp_transport:
            package = "httpx_aiohttp.httpx2" if self._module == "httpx2" else "httpx_aiohttp"
            transport_module: Any = importlib.import_module(package)
            options["transport"] = transport_module.AiohttpTransport(limits=limits, trust_env=False)
        self._client = httpx.AsyncClient(**options)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def forward(self, request: Outgoing, send: Send) -> None:
        upstream = self._client.build_request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        response = await self._client.send(upstream, stream=True)
        try:
            await _stream_out(
                send, response.status_code, response.headers.raw, response.aiter_raw()
            )
        finally:
            await response.aclose()


class AiohttpForwarder:
    """aiohttp's own ``ClientSession``."""

    def __init__(self) -> None:
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=KEEPALIVE_SECONDS)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def forward(self, request: Outgoing, send: Send) -> None:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers
        ]
        async with self._session.request(
            request.method, request.url, headers=headers, data=request.body, allow_redirects=False
        ) as response:
            await _stream_out(
                send, response.status, response.raw_headers, response.content.iter_any()
            )


FACTORIES: dict[str, Callable[[], Forwarder]] = {
    "httpx": lambda: HttpxStyleForwarder("httpx", aiohttp_transport=False, library_defaults=False),
    "httpx-defaults": lambda: HttpxStyleForwarder("httpx", False, library_defaults=True),
    "httpx-aiohttp": lambda: HttpxStyleForwarder("httpx", True, library_defaults=False),
    "httpx2": lambda: HttpxStyleForwarder("httpx2", False, library_defaults=False),
    "httpx2-aiohttp": lambda: HttpxStyleForwarder("httpx2", True, library_defaults=False),
    "aiohttp": AiohttpForwarder,
}
