"""Forward an authorised request to the orchestrator and stream the answer back.

Bodies stream both ways without buffering: each chunk the orchestrator sends (an SSE event,
say) is written to the client as it arrives. The request carries the gateway's signed identity
assertion instead of the client's credentials (see ``gateway.proxy.headers`` for the fields).

An upstream 401 is never relayed: the gateway only forwards requests it authenticated itself, so
the orchestrator refused the gateway's assertion (clocks apart, a signing key it does not know),
not the client's credential. Passing the 401 and its ``WWW-Authenticate`` on would send browsers
and CLIs to log in again, in a loop; the client gets 502 ``upstream_rejected_identity`` instead,
and operators a log line and ``mro_gateway_upstream_errors_total{kind="identity"}``.
An upstream 403 is relayed: the orchestrator answers 403 only for a valid assertion whose
permissions do not allow the request, which is the client's own answer and asks for no login.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from http import HTTPStatus
from typing import Protocol
from urllib.parse import urlsplit

import anyio
from starlette.types import Receive, Scope, Send

from gateway.edge.ambiguous_paths import raw_path
from gateway.edge.request_context import RequestContext
from gateway.errors import (
    UpstreamError,
    UpstreamRejectedIdentity,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.proxy.headers import (
    ASSERTION_HEADER,
    forward_request_headers,
    forward_response_headers,
)
from gateway.proxy.upstream import UpstreamClient, UpstreamResponse

__all__ = ["AssertionIssuer", "ClientDisconnected", "Proxy"]

logger = logging.getLogger(__name__)

# Bounds on reading a refusal's problem document, only to log its code.
_REFUSAL_PEEK_BYTES = 4096
_REFUSAL_PEEK_SECONDS = 1.0
_PROBLEM_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class AssertionIssuer(Protocol):
    """Signs the identity assertion the orchestrator trusts."""

    def sign(self, identity: Identity) -> str: ...


class ClientDisconnected(Exception):
    """The client went away while its request body was being forwarded."""


class _BodyState:
    """Remembers why reading the client's body failed, to tell it apart from upstream errors."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


async def _client_body(receive: Receive, state: _BodyState) -> AsyncIterator[bytes]:
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
    except BaseException as exc:
        state.error = exc
        raise


def _error_kind(exc: UpstreamError) -> str:
    if isinstance(exc, UpstreamUnavailable):
        return "unavailable"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    return "bad_response"


class Proxy:
    """Forwards requests to one upstream base URL through a shared client."""

    def __init__(
        self,
        client: UpstreamClient,
        upstream_url: str,
        signer: AssertionIssuer,
        metrics: Metrics,
        public_url: str,
    ) -> None:
        self._client = client
        self._base = upstream_url.rstrip("/")
        self._signer = signer
        self._metrics = metrics
        public = urlsplit(public_url)
        self._proto = public.scheme or "http"
        self._host = public.netloc

    def _added_headers(self, context: RequestContext) -> list[tuple[str, str]]:
        added = [
            ("x-forwarded-for", context.client_ip),
            ("x-forwarded-proto", self._proto),
            ("x-forwarded-host", self._host),
            ("x-request-id", context.request_id),
        ]
        if context.identity is not None:
            added.append((ASSERTION_HEADER, self._signer.sign(context.identity)))
        return added

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, context: RequestContext
    ) -> None:
        """Send the request upstream and relay the response; raises UpstreamError before the
        response started, and the client-side error (PayloadTooLarge, ClientDisconnected) when
        reading the client's body failed."""
        url = self._base + raw_path(scope).decode("ascii")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = forward_request_headers(scope["headers"], self._added_headers(context))
        state = _BodyState()
        body = _client_body(receive, state) if _has_body(scope) else None
        try:
            response = await self._client.send(scope["method"], url, headers, body)
        except Exception as exc:
            if state.error is not None:
                raise state.error from None
            if isinstance(exc, UpstreamError):
                self._metrics.upstream_error(_error_kind(exc))
            raise
        if response.status == HTTPStatus.UNAUTHORIZED:
            raise await self._identity_refused(response, context)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": forward_response_headers(response.headers),
                }
            )
            if _is_event_stream(response.headers):
                await self._relay_until_disconnect(response, send, receive)
            else:
                await self._relay(response, send)
        finally:
            await response.aclose()

    async def _identity_refused(
        self, response: UpstreamResponse, context: RequestContext
    ) -> UpstreamRejectedIdentity:
        """Count and log the orchestrator's refusal of the assertion; the error to answer."""
        try:
            upstream_code = await _problem_code(response)
        finally:
            await response.aclose()
        self._metrics.upstream_error("identity")
        logger.error(
            "upstream refused the gateway's identity assertion",
            extra={
                "request_id": context.request_id,
                "upstream_status": HTTPStatus.UNAUTHORIZED.value,
                "upstream_code": upstream_code,
            },
        )
        return UpstreamRejectedIdentity(
            "The service behind the gateway refused the gateway's identity assertion; "
            "the request's credential was accepted, signing in again will not help."
        )

    async def _relay(self, response: UpstreamResponse, send: Send) -> None:
        try:
            async for chunk in response.aiter_bytes():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            # Too late for a problem document: end without completing, so the client sees
            # a broken response rather than a short one that looks whole.
            self._metrics.upstream_error(_error_kind(exc))
            logger.warning("upstream response broke off", extra={"error": exc.code})
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_until_disconnect(
        self, response: UpstreamResponse, send: Send, receive: Receive
    ) -> None:
        """Relay an event stream; stop (and drop the upstream stream, so the orchestrator can
        stop generating) as soon as the client disconnects. Raises ClientDisconnected then."""
        disconnected = False

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True
            scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(watch, group.cancel_scope)
            await self._relay(response, send)
            group.cancel_scope.cancel()
        if disconnected:
            raise ClientDisconnected


async def _problem_code(response: UpstreamResponse) -> str | None:
    """The ``code`` of a small problem+json body, read within bounds; None when there is none."""
    body = b""
    with anyio.move_on_after(_REFUSAL_PEEK_SECONDS):
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _REFUSAL_PEEK_BYTES:
                    return None
        except UpstreamError:
            return None
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) and _PROBLEM_CODE.fullmatch(code) else None


def _is_event_stream(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(b"text/event-stream")
        for name, value in headers
    )
