"""The upstream clients: one contract on aiohttp and httpx, their errors become gateway errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.proxy.upstream import (
    AiohttpUpstreamClient,
    HttpxUpstreamClient,
    Timeouts,
    UpstreamClient,
)

TIMEOUTS = Timeouts(connect=1.0, read=0.3, write=0.3, pool=1.0)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamClient]:
    made: UpstreamClient = (
        AiohttpUpstreamClient(TIMEOUTS, pool_size=4)
        if request.param == "aiohttp"
        else HttpxUpstreamClient(TIMEOUTS, pool_size=4)
    )
    await made.start()
    yield made
    await made.aclose()


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _read_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def _chunks_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nx-up: 1\r\ncontent-length: 10\r\n\r\nhello")
    await writer.drain()
    writer.close()


async def _head_then_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
    await writer.drain()
    await reader.read()  # never sends the rest; waits for the client to hang up
    writer.close()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    writer.write(b"this is not HTTP\r\n\r\n")
    await writer.drain()
    writer.close()


async def _whole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_head(reader)
    writer.write(b"HTTP/1.1 201 Created\r\nx-up: 1\r\ncontent-length: 5\r\n\r\nhello")
    await writer.drain()
    writer.close()


async def test_head_and_body_pass_through(client: UpstreamClient) -> None:
    """Status, raw header fields and the body arrive as the upstream sent them."""
    server, url = await _serve(_whole)
    async with server:
        response = await client.send("GET", url + "/x", [("accept", "*/*")], None)
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
        await response.aclose()
    assert response.status == 201
    assert (b"x-up", b"1") in [(name.lower(), value) for name, value in response.headers]
    assert body == b"hello"


async def test_a_client_that_was_not_started_is_unavailable() -> None:
    """send() before start() (or after aclose()) is a 503, not an AttributeError."""
    for made in (AiohttpUpstreamClient(TIMEOUTS), HttpxUpstreamClient(TIMEOUTS)):
        with pytest.raises(UpstreamUnavailable):
            await made.send("GET", "http://127.0.0.1:9/", [], None)
        await made.start()
        await made.aclose()
        with pytest.raises(UpstreamUnavailable):
            await made.send("GET", "http://127.0.0.1:9/", [], None)


async def test_a_refused_connection_is_unavailable(client: UpstreamClient) -> None:
    """Nobody listening on the port: UpstreamUnavailable (503)."""
    server, url = await _serve(_whole)
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamUnavailable):
        await client.send("GET", url + "/x", [], None)


async def test_a_malformed_answer_is_a_bad_gateway(client: UpstreamClient) -> None:
    """A response that is not HTTP becomes UpstreamError (502), nothing of the library's."""
    server, url = await _serve(_garbage)
    async with server:
        with pytest.raises(UpstreamError) as raised:
            await client.send("GET", url + "/x", [], None)
    assert type(raised.value) is UpstreamError


async def test_a_body_that_stops_coming_times_out(client: UpstreamClient) -> None:
    """No further body bytes within the read timeout: UpstreamTimeout (504) from aiter_bytes."""
    server, url = await _serve(_head_then_stall)
    async with server:
        response = await client.send("GET", url + "/x", [], None)
        with pytest.raises(UpstreamTimeout):
            async for _ in response.aiter_bytes():
                pass
        await response.aclose()


async def test_a_body_cut_short_is_a_broken_response(client: UpstreamClient) -> None:
    """The upstream closing before Content-Length is reached: UpstreamError from aiter_bytes."""
    server, url = await _serve(_chunks_then_close)
    async with server:
        response = await client.send("GET", url + "/x", [], None)
        with pytest.raises(UpstreamError) as raised:
            async for _ in response.aiter_bytes():
                pass
        await response.aclose()
    assert type(raised.value) is UpstreamError
