"""What the token estimate reads from an LLM request body."""

from __future__ import annotations

from gateway.llm_question import parse_question


def test_a_question_nested_past_the_parser_depth_passes_unchanged() -> None:
    """A body nested deeper than json can parse is reserved by size and forwarded as sent."""
    body = b"[" * 50_000 + b"]" * 50_000
    question = parse_question(body, 100)
    assert question.body is body
    assert question.rewritten is False
    assert question.chars == len(body)
    assert question.max_tokens == 100
