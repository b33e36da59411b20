"""Typed dependencies of the routes, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from orchestrator.answer_liveness import AnswerLiveness
from orchestrator.api.resources import Resources
from orchestrator.chat import ChatService
from orchestrator.errors import AuthenticationError, PermissionDenied
from orchestrator.identity import Principal
from orchestrator.repository import ConversationRepository
from orchestrator.settings import OrchestratorSettings


def get_resources(request: Request) -> Resources:
    resources: Resources = request.state.resources
    return resources


def get_settings(request: Request) -> OrchestratorSettings:
    return get_resources(request).settings


def get_repository(request: Request) -> ConversationRepository:
    return get_resources(request).repository


def get_chat(request: Request) -> ChatService:
    return get_resources(request).chat


def get_liveness(request: Request) -> AnswerLiveness:
    return get_resources(request).liveness


def get_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # pragma: no cover - the assertion middleware guarantees one
        raise AuthenticationError("The request carries no identity assertion")
    return principal


def require(permission: str) -> Callable[[Principal], Principal]:
    """A dependency answering 403 unless the caller holds permission."""

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has(permission):
            raise PermissionDenied(f"This requires the permission {permission!r}")
        return principal

    return check


Settings = Annotated[OrchestratorSettings, Depends(get_settings)]
Repository = Annotated[ConversationRepository, Depends(get_repository)]
Chat = Annotated[ChatService, Depends(get_chat)]
Liveness = Annotated[AnswerLiveness, Depends(get_liveness)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
