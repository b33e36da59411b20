"""HTTP/1.1 on a bare socket: requests exactly as written, every response the server sends back.

Clients such as httpx normalise paths, merge fields and frame bodies themselves; the attacks in
this suite depend on bytes they would never send. ``exchange`` writes the bytes, reads until the
server closes (or goes quiet) and splits what came back into responses, so a test can see a
second, smuggled response as well as a missing one.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

QUIET_SECONDS = 1.5


@dataclass
class WireResponse:
    """One response as it came off the wire."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def connect(base_url: str, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server of base_url, from the loopback address source."""
    return socket.create_connection(
        address(base_url), timeout=timeout, source_address=(source, 0) if source else None
    )


def read_all(sock: socket.socket, quiet: float = QUIET_SECONDS) -> bytes:
    """Everything the server sends until it closes, or sends nothing for quiet seconds."""
    sock.settimeout(quiet)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = b""
    while True:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            _, _, rest = data.partition(b"\r\n")
            return body, rest
        body, data = body + data[:size], data[size + 2 :]


def parse_responses(data: bytes) -> list[WireResponse]:
    """The responses in data, in order (a body without framing runs to the end)."""
    responses: list[WireResponse] = []
    while data.startswith(b"HTTP/"):
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        response = WireResponse(int(lines[0].split(" ", 2)[1]))
        for line in lines[1:]:
            name, _, value = line.partition(":")
            response.headers.append((name.strip().lower(), value.strip()))
        if response.header("transfer-encoding"):
            response.body, data = _dechunk(data)
        elif lengths := response.header("content-length"):
            size = int(lengths[0])
            response.body, data = data[:size], data[size:]
        elif response.status not in (204, 304):
            response.body, data = data, b""
        responses.append(response)
    return responses


def exchange(
    base_url: str, request: bytes, *, source: str | None = None, quiet: float = QUIET_SECONDS
) -> list[WireResponse]:
    """Send request as it is and return every response the server wrote back."""
    with connect(base_url, source) as sock:
        sock.sendall(request)
        return parse_responses(read_all(sock, quiet))


def request_bytes(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    close: bool = True,
) -> bytes:
    """An HTTP/1.1 request with exactly these fields (Host first, Connection: close last)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test"]
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Trickler:
    """A connection that sends a request's head one byte at a time (a slow-loris client)."""

    def __init__(self, base_url: str, source: str | None = None) -> None:
        self.sock = connect(base_url, source)
        self._pending = b"GET /api/agents HTTP/1.1\r\nHost: gateway.test\r\nX-Slow: "

    def drip(self) -> bool:
        """Send one more byte; False when the server closed the connection."""
        if not self._pending:
            self._pending = b"a"
        byte, self._pending = self._pending[:1], self._pending[1:]
        try:
            self.sock.sendall(byte)
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
