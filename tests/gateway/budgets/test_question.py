"""What the token estimate reads from an LLM request body, and the max_tokens rule it enforces."""

from __future__ import annotations

import json

import pytest

from gateway.budgets.config import MAX_COMPLETION_TOKENS
from gateway.budgets.question import parse_question
from gateway.problems import ValidationFailed
from orchestrator.api.schemas import MAX_TOKENS_LIMIT
from tests.max_tokens_cases import REFUSED_MAX_TOKENS, message_body


def test_a_question_nested_past_the_parser_depth_passes_unchanged() -> None:
    """A body nested deeper than json can parse is reserved by size and forwarded as sent."""
    body = b"[" * 50_000 + b"]" * 50_000
    question = parse_question(body, 100)
    assert question.body is body
    assert question.rewritten is False
    assert question.chars == len(body)
    assert question.max_tokens == 100


@pytest.mark.parametrize("max_tokens", REFUSED_MAX_TOKENS.values(), ids=REFUSED_MAX_TOKENS.keys())
def test_max_tokens_other_than_an_integer_in_range_is_refused(max_tokens: str) -> None:
    """A string, float, bool, object or out-of-range max_tokens is a 422 naming the field."""
    with pytest.raises(ValidationFailed) as caught:
        parse_question(message_body(max_tokens), 100)
    assert caught.value.status == 422
    assert [error["loc"] for error in caught.value.errors] == [["body", "max_tokens"]]
    assert max_tokens not in json.dumps(caught.value.errors)


@pytest.mark.parametrize("max_tokens", [1, 64, MAX_COMPLETION_TOKENS])
def test_an_integer_max_tokens_in_range_is_reserved_and_forwarded_as_sent(max_tokens: int) -> None:
    """A JSON integer from 1 to the orchestrator's maximum is the estimate's max_tokens."""
    body = message_body(str(max_tokens))
    question = parse_question(body, 100)
    assert (question.max_tokens, question.rewritten, question.body) == (max_tokens, False, body)


@pytest.mark.parametrize("body", [b'{"content": "hi"}', b'{"content": "hi", "max_tokens": null}'])
def test_absent_or_null_max_tokens_gets_the_default_written_into_the_body(body: bytes) -> None:
    """Without max_tokens (or with null) the default is reserved and sent upstream."""
    question = parse_question(body, 100)
    assert question.max_tokens == 100
    assert json.loads(question.body) == {"content": "hi", "max_tokens": 100}


def test_a_lone_surrogate_escape_survives_the_rewrite() -> None:
    """A body the gateway rewrites is valid UTF-8 whatever escapes its text held."""
    question = parse_question(b'{"content": "a\\ud800b"}', 100)
    assert json.loads(question.body) == {"content": "a\ud800b", "max_tokens": 100}


def test_gateway_and_orchestrator_share_the_maximum() -> None:
    """The gateway refuses above the very maximum the orchestrator's model allows."""
    assert MAX_COMPLETION_TOKENS == MAX_TOKENS_LIMIT
