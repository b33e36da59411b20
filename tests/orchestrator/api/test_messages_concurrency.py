"""Many users asking at once: every question and answer lands in the right conversation."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.fixtures.orchestrator import Orchestrator, parse_sse

USERS = 20
MESSAGES_PER_USER = 3


async def _ask(orchestrator: Orchestrator, sub: str, conversation_id: str, n: int) -> None:
    question = f"Question {n} from {sub} about the APU starter"
    headers = orchestrator.as_user(sub, role="engineer")
    streamed = n % 2 == 1
    if streamed:
        headers["accept"] = "text/event-stream"
    body: dict[str, object] = {"content": question}
    if int(sub.split("-")[1]) % 2:
        body["agent"] = "troubleshooting"
    response = await orchestrator.http.post(
        f"/api/conversations/{conversation_id}/messages", json=body, headers=headers
    )
    assert response.status_code == (200 if streamed else 201), response.text
    if streamed:
        assert parse_sse(response.text)[-1][0] == "done"


@pytest.mark.slow
async def test_twenty_users_three_messages_each_at_once(orchestrator: Orchestrator) -> None:
    """60 concurrent sends (mixed streamed and whole) lose nothing and cross nothing."""
    subs = [f"user-{n}" for n in range(USERS)]
    conversations = {sub: await orchestrator.conversation(sub, role="engineer") for sub in subs}

    await asyncio.gather(
        *(
            _ask(orchestrator, sub, conversations[sub], n)
            for sub in subs
            for n in range(MESSAGES_PER_USER)
        )
    )

    repository = orchestrator.resources.repository
    for sub in subs:
        messages = await repository.list_messages(uuid.UUID(conversations[sub]))
        questions = {m.id: m for m in messages if m.role == "user"}
        answers = [m for m in messages if m.role == "assistant"]
        assert {m.content for m in questions.values()} == {
            f"Question {n} from {sub} about the APU starter" for n in range(MESSAGES_PER_USER)
        }
        assert len(answers) == MESSAGES_PER_USER
        assert {a.reply_to_id for a in answers} == set(questions)
        for answer in answers:
            assert answer.status == "complete"
            assert f'"{questions[answer.reply_to_id].content}"' in answer.content  # type: ignore[index]
        assert {m.owner_sub for m in messages} == {sub}
    page = await repository.list_all(limit=100)
    assert page.total == USERS
