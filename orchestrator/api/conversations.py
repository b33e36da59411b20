"""Conversations: create, list (own or everyone's), read with messages, delete."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Response

from orchestrator.api.dependencies import CurrentPrincipal, Liveness, Repository, require
from orchestrator.api.schemas import (
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationPage,
    MessageOut,
)
from orchestrator.errors import InvalidRequest, NotFound, PermissionDenied
from orchestrator.identity import Principal

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

READ_OWN = "conversations:read:own"
READ_ALL = "conversations:read:all"


@router.post("", status_code=201)
async def create_conversation(
    principal: Annotated[Principal, Depends(require("conversations:create"))],
    repository: Repository,
    body: Annotated[ConversationCreate | None, Body()] = None,
) -> ConversationOut:
    conversation = await repository.create_conversation(
        owner_sub=principal.sub,
        owner_name=principal.display_name,
        title=(body.title if body and body.title else ""),
    )
    return ConversationOut.of(conversation)


@router.get("")
async def list_conversations(
    principal: CurrentPrincipal,
    repository: Repository,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    scope: Annotated[Literal["own", "all"], Query()] = "own",
    user: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
) -> ConversationPage:
    if scope == "all":
        if not principal.has(READ_ALL):
            raise PermissionDenied(f"scope=all requires the permission {READ_ALL!r}")
        page = await repository.list_all(owner_sub=user, limit=limit, offset=offset)
        return ConversationPage.of(page)
    if user is not None:
        raise InvalidRequest("The user filter needs scope=all")
    if not (principal.has(READ_OWN) or principal.has(READ_ALL)):
        raise PermissionDenied(f"This requires the permission {READ_OWN!r}")
    page = await repository.list_for_owner(principal.sub, limit=limit, offset=offset)
    return ConversationPage.of(page)


@router.get("/{conversation_id}")
async def get_conversation(
    conversation_id: uuid.UUID,
    principal: CurrentPrincipal,
    repository: Repository,
    liveness: Liveness,
) -> ConversationDetail:
    if principal.has(READ_ALL):
        conversation = await repository.get_conversation(conversation_id)
    elif principal.has(READ_OWN):
        conversation = await repository.get_owned_conversation(conversation_id, principal.sub)
    else:
        raise PermissionDenied(f"This requires the permission {READ_OWN!r}")
    if conversation is None:
        raise NotFound("Conversation not found")
    messages = await repository.list_messages(conversation.id)
    return ConversationDetail(
        **ConversationOut.of(conversation).model_dump(),
        messages=[MessageOut.of(m, liveness.status_of(m)) for m in messages],
    )


@router.delete("/{conversation_id}", status_code=204)
async def delete_conversation(
    conversation_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require("conversations:delete:own"))],
    repository: Repository,
) -> Response:
    if not await repository.delete_conversation(conversation_id, principal.sub):
        raise NotFound("Conversation not found")
    return Response(status_code=204)
