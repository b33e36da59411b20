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
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

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


_Pool = TypeVar("_Pool")


class _Outgoing(NamedTuple):
    method: str
    url: str
    headers: Sequence[tuple[str, str]]
    body: AsyncIterator[bytes] | None


@dataclass(frozen=True, slots=True)
class _Failures:
    """How one library's exceptions become gateway errors, before and after the head arrived."""

    unavailable: tuple[type[Exception], ...]
    timeout: tuple[type[Exception], ...]
    any: tuple[type[Exception], ...]

    def on_send(self, exc: Exception) -> UpstreamError:
        if isinstance(exc, self.unavailable):
            return UpstreamUnavailable("The orchestrator cannot be reached.")
        if isinstance(exc, self.timeout):
            return UpstreamTimeout("The orchestrator did not answer in time.")
        return UpstreamError("The orchestrator's answer was not usable.")

    def on_read(self, exc: Exception) -> UpstreamError:
        if isinstance(exc, self.timeout):
            return UpstreamTimeout("The orchestrator stopped sending its response.")
        return UpstreamError("The orchestrator's response broke off.")


class _Response:
    """A library's streamed response behind ``UpstreamResponse``: errors translated, and told on
    close whether the body was read to the end (a connection goes back to the pool only then)."""

    __slots__ = ("_chunks", "_done", "_failures", "_finish", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
        chunks: AsyncIterator[bytes],
        failures: _Failures,
        finish: Callable[[bool], Awaitable[None]],
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._failures = failures
        self._finish = finish
        self._done = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except self._failures.any as exc:
            raise self._failures.on_read(exc) from exc
        self._done = True

    async def aclose(self) -> None:
        await self._finish(self._done)


class _PooledClient(ABC, Generic[_Pool]):
    """What every library shares: the pool's lifetime, the not-started check and the error
    translation; a subclass creates, uses and closes its library's pool."""

    _failures: _Failures

    def __init__(self) -> None:
        self._pool: _Pool | None = None

    @abstractmethod
    def _create(self) -> _Pool: ...

    @abstractmethod
    async def _close(self, pool: _Pool) -> None: ...

    @abstractmethod
    async def _open(self, pool: _Pool, request: _Outgoing) -> _Response: ...

    async def start(self) -> None:
        self._pool = self._create()

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await self._close(pool)

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: AsyncIterator[bytes] | None,
    ) -> UpstreamResponse:
        """Send a request and return once the response's head arrived; raises UpstreamError."""
        if self._pool is None:
            raise UpstreamUnavailable("The upstream client is not started.")
        try:
            return await self._open(self._pool, _Outgoing(method, url, headers, body))
        except self._failures.any as exc:
            raise self._failures.on_send(exc) from exc


class AiohttpUpstreamClient(_PooledClient[aiohttp.ClientSession]):
    """The default client: aiohttp's connection pool (lowest added latency measured here)."""

    _failures = _Failures(
        unavailable=(aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError),
        timeout=(TimeoutError, aiohttp.SocketTimeoutError),
        any=(TimeoutError, aiohttp.ClientError),
    )

    def __init__(self, timeouts: Timeouts, pool_size: int = 100) -> None:
        super().__init__()
        self._timeouts = timeouts
        self._pool_size = pool_size

    def _create(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, limit_per_host=self._pool_size, keepalive_timeout=30
        )
        return aiohttp.ClientSession(
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

    async def _close(self, pool: aiohttp.ClientSession) -> None:
        await pool.close()

    async def _open(self, pool: aiohttp.ClientSession, request: _Outgoing) -> _Response:
        method, url, headers, body = request
        response = await pool.request(
            method, url, headers=headers, data=body, allow_redirects=False
        )

        async def finish(done: bool) -> None:
            if done:
                response.release()
            else:
                response.close()

        chunks = response.content.iter_any()
        return _Response(response.status, response.raw_headers, chunks, self._failures, finish)


def _no_cookies() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class HttpxUpstreamClient(_PooledClient[httpx.AsyncClient]):
    """The same contract on httpx (``transport`` lets tests and benchmarks swap the wire)."""

    _failures = _Failures(
        unavailable=(httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout),
        timeout=(httpx.TimeoutException,),
        any=(httpx.HTTPError,),
    )

    def __init__(
        self,
        timeouts: Timeouts,
        pool_size: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self._timeouts = timeouts
        self._pool_size = pool_size
        self._transport = transport

    def _create(self) -> httpx.AsyncClient:
        t = self._timeouts
        return httpx.AsyncClient(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            limits=httpx.Limits(
                max_connections=self._pool_size, max_keepalive_connections=self._pool_size
            ),
            cookies=_no_cookies(),
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
        )

    async def _close(self, pool: httpx.AsyncClient) -> None:
        await pool.aclose()

    async def _open(self, pool: httpx.AsyncClient, request: _Outgoing) -> _Response:
        method, url, headers, body = request
        built = pool.build_request(method, url, headers=headers, content=body)
        response = await pool.send(built, stream=True)

        async def finish(done: bool) -> None:
            await response.aclose()

        chunks = response.aiter_raw()
        return _Response(response.status_code, response.headers.raw, chunks, self._failures, finish)
