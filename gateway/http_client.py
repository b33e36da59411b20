"""The proxy's HTTP client behind one small interface, with aiohttp and httpx implementations.

Both stream request and response bodies, pool connections for the process's lifetime, never
follow redirects, never keep cookies (one user's ``Set-Cookie`` must not reach another user's
request) and never decompress (bytes pass through as the orchestrator sent them). Their errors
become gateway errors here, where they enter:

* ``UpstreamUnavailable`` (503): connection refused or not established in time, pool exhausted;
* ``UpstreamTimeout`` (504): no response (or no further body bytes) within the read timeout;
* ``UpstreamError`` (502): anything else, such as a malformed response.
"""

from __future__ import annotations

import http.cookiejar
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx

from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

__all__ = [
    "AiohttpUpstreamClient",
    "HttpxUpstreamClient",
    "Timeouts",
    "UpstreamClient",
    "UpstreamResponse",
]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed to get a pooled connection or connect, and between body reads/writes."""

    connect: float = 3.0
    read: float = 120.0
    write: float = 120.0
    pool: float = 3.0


class UpstreamResponse(Protocol):
    """A response whose body has not been read yet."""

    status: int
    headers: Sequence[tuple[bytes, bytes]]

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives; raises UpstreamError subclasses."""
        ...

    async def aclose(self) -> None:
        """Give the connection back (or drop it when the body was not read to the end)."""


class UpstreamClient(Protocol):
    """A pooled, long-lived client; ``start`` and ``aclose`` run in the app's lifespan."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
    ) -> UpstreamResponse:
        """Send a request and return once the response's head arrived; raises UpstreamError."""
        ...


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Sequence[tuple[bytes, bytes]] = response.raw_headers
        self._done = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise UpstreamTimeout("The orchestrator stopped sending its response.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("The orchestrator's response broke off.") from exc
        self._done = True

    async def aclose(self) -> None:
        if self._done:
            self._response.release()
        else:
            self._response.close()


class AiohttpUpstreamClient:
    """The default client: aiohttp's connection pool (lowest added latency measured here)."""

    def __init__(self, timeouts: Timeouts, pool_size: int = 100) -> None:
        self._timeouts = timeouts
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, limit_per_host=self._pool_size, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self._timeouts.pool + self._timeouts.connect,
                sock_connect=self._timeouts.connect,
                sock_read=self._timeouts.read,
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
    ) -> UpstreamResponse:
        if self._session is None:
            raise UpstreamUnavailable("The upstream client is not started.")
        try:
            response = await self._session.request(
                method, url, headers=list(headers), data=body, allow_redirects=False
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise UpstreamUnavailable("The orchestrator cannot be reached.") from exc
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise UpstreamTimeout("The orchestrator did not answer in time.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("The orchestrator's answer was not usable.") from exc
        return _AiohttpResponse(response)


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Sequence[tuple[bytes, bytes]] = response.headers.raw

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("The orchestrator stopped sending its response.") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError("The orchestrator's response broke off.") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


def _no_cookies() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class HttpxUpstreamClient:
    """The same contract on httpx (``transport`` lets tests and benchmarks swap the wire)."""

    def __init__(
        self,
        timeouts: Timeouts,
        pool_size: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeouts = timeouts
        self._pool_size = pool_size
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        t = self._timeouts
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            limits=httpx.Limits(
                max_connections=self._pool_size, max_keepalive_connections=self._pool_size
            ),
            cookies=_no_cookies(),
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
    ) -> UpstreamResponse:
        if self._client is None:
            raise UpstreamUnavailable("The upstream client is not started.")
        request = self._client.build_request(method, url, headers=list(headers), content=body)
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UpstreamUnavailable("The orchestrator cannot be reached.") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("The orchestrator did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError("The orchestrator's answer was not usable.") from exc
        return _HttpxResponse(response)
