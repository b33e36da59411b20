"""``create_app``: the orchestrator's FastAPI application and its lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from orchestrator.answer_liveness import AnswerLiveness
from orchestrator.api import agents, conversations, health, messages
from orchestrator.api.authentication import AssertionMiddleware
from orchestrator.api.resources import Resources, State
from orchestrator.chat import ChatService
from orchestrator.db import create_engine
from orchestrator.identity import AssertionVerifier
from orchestrator.jwks import KeySource, RemoteKeySource, StaticKeySource
from orchestrator.llm import AzureLLMClient, LLMClient, LLMSettings
from orchestrator.logs import RequestIdMiddleware
from orchestrator.migrate import upgrade
from orchestrator.problems import CatchAll, install
from orchestrator.repository import ConversationRepository
from orchestrator.settings import Environment, OrchestratorSettings

Clock = Callable[[], float]
JWKSOption = Mapping[str, Any] | KeySource | None


def llm_settings(settings: OrchestratorSettings) -> LLMSettings:
    """The model client's settings taken from the orchestrator's."""
    return LLMSettings(
        endpoint=settings.azure_endpoint,
        deployment=settings.azure_deployment,
        api_version=settings.azure_api_version,
        api_key=settings.azure_api_key if settings.azure_entra_token is None else None,
        entra_token=settings.azure_entra_token,
        timeout_seconds=settings.azure_timeout_seconds,
        connect_timeout_seconds=settings.azure_connect_timeout_seconds,
        max_retries=settings.azure_max_retries,
        retry_backoff_seconds=settings.azure_retry_backoff_seconds,
        retry_max_wait_seconds=settings.azure_retry_max_wait_seconds,
    )


def create_app(
    settings: OrchestratorSettings | None = None,
    *,
    llm: LLMClient | None = None,
    jwks: JWKSOption = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The orchestrator API.

    ``llm`` replaces the Azure OpenAI client (the caller then closes it), ``jwks`` is a JWKS
    document or KeySource to trust instead of fetching the gateway's, ``clock`` (epoch seconds)
    drives assertion expiry and stored timestamps.
    """
    settings = settings or OrchestratorSettings()
    now = clock or time.time

    def utc_clock() -> datetime:
        return datetime.fromtimestamp(now(), UTC)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            engine = create_engine(settings.database_url)
            stack.push_async_callback(engine.dispose)
            if settings.migrate_on_startup:
                await upgrade(engine)
            keys = await _key_source(settings, jwks, stack)
            model = llm
            if model is None:
                model = AzureLLMClient(llm_settings(settings))
                stack.push_async_callback(model.aclose)
            repository = ConversationRepository(engine, clock=utc_clock)
            liveness = AnswerLiveness.for_settings(settings, clock=utc_clock)
            yield {
                "resources": Resources(
                    settings=settings,
                    engine=engine,
                    repository=repository,
                    keys=keys,
                    verifier=AssertionVerifier(
                        keys,
                        issuer=settings.assertion_issuer,
                        audience=settings.assertion_audience,
                        leeway_seconds=settings.assertion_leeway_seconds,
                        algorithms=settings.assertion_algorithms,
                        clock=now,
                    ),
                    llm=model,
                    liveness=liveness,
                    chat=ChatService(
                        repository,
                        model,
                        liveness=liveness,
                        min_confidence=settings.classifier_min_confidence,
                        classifier_timeout=settings.classifier_timeout_seconds,
                        max_history=settings.max_history_messages,
                    ),
                )
            }

    production = settings.environment is Environment.PRODUCTION
    app = FastAPI(
        title="MRO orchestrator",
        lifespan=lifespan,
        docs_url=None if production else "/docs",
        redoc_url=None,
        openapi_url=None if production else "/openapi.json",
    )
    install(app)
    for router in (health.router, agents.router, conversations.router, messages.router):
        app.include_router(router)
    # Added last runs first: request id, then the catch-all, then the assertion check.
    app.add_middleware(AssertionMiddleware)
    app.add_middleware(CatchAll)
    app.add_middleware(RequestIdMiddleware)
    return app


async def _key_source(
    settings: OrchestratorSettings, jwks: JWKSOption, stack: AsyncExitStack
) -> KeySource:
    if isinstance(jwks, Mapping):
        return StaticKeySource(jwks)
    if jwks is not None:
        return jwks
    if settings.gateway_jwks_file is not None:
        return StaticKeySource.from_file(settings.gateway_jwks_file)
    client = httpx.AsyncClient(follow_redirects=False)
    stack.push_async_callback(client.aclose)
    return RemoteKeySource(
        settings.gateway_jwks_url,
        client,
        cache_seconds=settings.jwks_cache_seconds,
        cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
        timeout_seconds=settings.jwks_fetch_timeout_seconds,
    )
