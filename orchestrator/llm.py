"""The seam between the orchestrator and the language model, and its Azure OpenAI implementation.

Errors raised through the seam (``status`` is the HTTP status the API answers with)::

    LLMError
    ├── LLMUnavailable   503 + Retry-After: upstream 408/409/429/5xx, connection failure
    ├── LLMTimeout       504: no answer (or no next chunk) within the timeout
    └── LLMBadResponse   502: the answer could not be read
        └── LLMRejected  502: upstream refused the request (400, 401, 403, 404, ...)
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self, TypedDict, TypeVar, cast

import openai
from openai import Omit
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.completion_usage import CompletionUsage
from openai.types.shared_params import ResponseFormatJSONSchema
from openai.types.shared_params.response_format_json_schema import JSONSchema
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

log = logging.getLogger(__name__)

T = TypeVar("T")
TokenProvider = Callable[[], str | Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    usage: Usage
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class StreamDelta:
    content: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    usage: Usage | None
    finish_reason: str | None


class LLMClient(Protocol):
    """A chat model. Every method raises only ``LLMError`` subclasses for upstream trouble."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP request's timeout
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[StreamDelta | StreamEnd]: ...

    async def aclose(self) -> None: ...


class LLMError(Exception):
    """Base of the model errors; ``code`` is stable, ``detail`` is safe to show clients."""

    status: int = 502
    code: str = "llm_error"
    title: str = "Language model error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code


class LLMUnavailable(LLMError):
    status = 503
    code = "llm_unavailable"
    title = "Language model unavailable"

    def __init__(
        self, detail: str = "", *, retry_after: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class LLMTimeout(LLMError):
    status = 504
    code = "llm_timeout"
    title = "Language model timeout"


class LLMBadResponse(LLMError):
    status = 502
    code = "llm_bad_response"
    title = "Unreadable language model answer"


class LLMRejected(LLMBadResponse):
    code = "llm_rejected"
    title = "Language model refused the request"


class LLMSettings(BaseModel):
    """Where and how to reach the Azure OpenAI deployment; exactly one credential is used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = "http://127.0.0.1:8002"
    deployment: str = "gpt-4o-mini"
    api_version: str = "2024-10-21"
    api_key: SecretStr | None = None
    entra_token: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    # First backoff; doubles per retry. A Retry-After above retry_max_wait_seconds is not waited
    # for: the caller gets LLMUnavailable(retry_after) at once.
    retry_backoff_seconds: float = Field(default=0.5, ge=0)
    retry_max_wait_seconds: float = Field(default=8.0, ge=0)

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("endpoint must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if self.api_key is not None and self.entra_token is not None:
            raise ValueError("set either api_key or entra_token, not both")
        return self


class AzureLLMClient:
    """``LLMClient`` over ``openai.AsyncAzureOpenAI`` with explicit timeouts and bounded retries.

    The SDK's own retries are off: this class retries 408/409/429/5xx and connection failures
    ``max_retries`` times, honouring Retry-After up to ``retry_max_wait_seconds``; timeouts and
    broken streams are not retried (the caller's time budget is already spent).
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        token_provider: TokenProvider | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        token = settings.entra_token.get_secret_value() if settings.entra_token else None
        given = sum(value is not None for value in (api_key, token, token_provider))
        if given != 1:
            raise ValueError(
                "configure exactly one Azure OpenAI credential: api key, Entra token or provider"
            )
        self._settings = settings
        self._sleep = sleep
        self._client = openai.AsyncAzureOpenAI(
            azure_endpoint=settings.endpoint,
            azure_deployment=settings.deployment,
            api_version=settings.api_version,
            api_key=api_key,
            azure_ad_token=token,
            azure_ad_token_provider=token_provider,
            timeout=openai.Timeout(
                settings.timeout_seconds, connect=settings.connect_timeout_seconds
            ),
            max_retries=0,
        )

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP request's timeout
    ) -> Completion:
        """One answer. ``json_schema`` is response_format's object: name, schema, strict.

        Raises LLMUnavailable, LLMTimeout, LLMBadResponse (or LLMRejected).
        """
        seconds = timeout if timeout is not None else self._settings.timeout_seconds
        connect = min(seconds, self._settings.connect_timeout_seconds)
        response = await self._retrying(
            lambda: self._client.chat.completions.create(
                model=self._settings.deployment,
                messages=_to_params(messages),
                max_completion_tokens=max_tokens if max_tokens is not None else openai.omit,
                response_format=_response_format(json_schema),
                timeout=openai.Timeout(seconds, connect=connect),
            )
        )
        return _completion(response)

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> AsyncIterator[StreamDelta | StreamEnd]:
        """Deltas as they arrive, then one StreamEnd with usage.

        Raises (possibly after some deltas) LLMUnavailable, LLMTimeout, LLMBadResponse.
        """
        chunks = await self._retrying(
            lambda: self._client.chat.completions.create(
                model=self._settings.deployment,
                messages=_to_params(messages),
                max_completion_tokens=max_tokens if max_tokens is not None else openai.omit,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage: Usage | None = None
        finish_reason: str | None = None
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices or ():
                    finish_reason = choice.finish_reason or finish_reason
                    if choice.delta is not None and choice.delta.content:
                        yield StreamDelta(content=choice.delta.content)
        except (openai.OpenAIError, ValueError, AttributeError, TypeError) as exc:
            raise _map_error(exc) from exc
        finally:
            await chunks.close()
        yield StreamEnd(usage=usage, finish_reason=finish_reason)

    async def aclose(self) -> None:
        """Close the pooled HTTP connections."""
        await self._client.close()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except (openai.OpenAIError, ValueError) as exc:
                error = _map_error(exc)
                wait = self._retry_wait(error, attempt, exc)
                if wait is None:
                    raise error from exc
            attempt += 1
            log.warning("LLM call failed (%s); retry %d in %.2fs", error.code, attempt, wait)
            await self._sleep(wait)

    def _retry_wait(self, error: LLMError, attempt: int, exc: Exception) -> float | None:
        """Seconds to wait before the next attempt, or None when the error is final."""
        settings = self._settings
        if not isinstance(error, LLMUnavailable) or attempt >= settings.max_retries:
            return None
        hinted = _retry_after_seconds(exc)
        if hinted is not None:
            return hinted if hinted <= settings.retry_max_wait_seconds else None
        backoff = min(
            settings.retry_backoff_seconds * 2.0**attempt, settings.retry_max_wait_seconds
        )
        return backoff * (1 - 0.25 * random.random())  # noqa: S311 - jitter, not a secret


def _to_params(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    # ChatMessage is the common subset of the SDK's system, user and assistant message params.
    return cast("list[ChatCompletionMessageParam]", list(messages))


def _response_format(json_schema: dict[str, Any] | None) -> ResponseFormatJSONSchema | Omit:
    if json_schema is None:
        return openai.omit
    return {"type": "json_schema", "json_schema": cast(JSONSchema, json_schema)}


def _usage(usage: CompletionUsage) -> Usage:
    try:
        return Usage(
            prompt_tokens=int(usage.prompt_tokens),
            completion_tokens=int(usage.completion_tokens),
            total_tokens=int(usage.total_tokens),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise LLMBadResponse("The language model reported unreadable usage") from exc


def _completion(response: object) -> Completion:
    # The SDK builds models without validation and returns plain text for non-JSON bodies.
    if not isinstance(response, ChatCompletion):
        raise LLMBadResponse("The language model answer was not a chat completion")
    try:
        choice = response.choices[0]
        content = choice.message.content or ""
        finish_reason = choice.finish_reason
        usage = response.usage
    except (AttributeError, IndexError, TypeError, KeyError) as exc:
        raise LLMBadResponse("The language model answer had no choice") from exc
    if not isinstance(content, str):
        raise LLMBadResponse("The language model answer had no text")
    if usage is None:
        log.warning("LLM answer without usage; counting zero tokens")
        return Completion(content, Usage(0, 0, 0), finish_reason)
    return Completion(content=content, usage=_usage(usage), finish_reason=finish_reason)


def _map_error(exc: Exception) -> LLMError:
    """The domain error for an SDK (or decoding) exception."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout("The language model did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailable("The language model could not be reached")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in (408, 409, 429) or status >= 500:
            hinted = _retry_after_seconds(exc)
            retry_after = math.ceil(hinted) if hinted is not None else None
            return LLMUnavailable(
                f"The language model is unavailable (upstream {status})", retry_after=retry_after
            )
        return LLMRejected(f"The language model refused the request (upstream {status})")
    if isinstance(exc, openai.APIResponseValidationError | ValueError | AttributeError | TypeError):
        return LLMBadResponse("The language model sent a malformed answer")
    if isinstance(exc, openai.APIError):
        # An error event inside a stream: the upstream failed while answering.
        return LLMUnavailable("The language model failed while answering")
    return LLMUnavailable("The language model client failed")


def _retry_after_seconds(exc: Exception) -> float | None:
    """Delta-seconds from retry-after-ms or retry-after; HTTP dates are ignored."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers: Mapping[str, str] = exc.response.headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None
