"""Reading agent and token usage from JSON and SSE answers as their chunks pass."""

from __future__ import annotations

import json

from gateway.budgets.answer_reader import AnswerReader, Usage


def test_answer_reader_takes_usage_and_agent_from_a_json_answer() -> None:
    """A 201 body's assistant_message gives the usage and the agent, whatever the chunking."""
    body = json.dumps(
        {
            "assistant_message": {
                "agent": "compliance",
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                "classification_usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }
        }
    ).encode()
    reader = AnswerReader()
    reader.start(201, [(b"content-type", b"application/json")])
    for index in range(0, len(body), 7):
        reader.feed(body[index : index + 7])
    reader.finish()
    assert reader.agent == "compliance"
    assert reader.usage == Usage(5, 7, 12)
    assert reader.classification == Usage(3, 1, 4)


def test_answer_reader_follows_sse_events_split_anywhere() -> None:
    """meta and done are read from an event stream cut at every byte, CRLF or LF."""
    stream = (
        b'event: meta\r\ndata: {"agent": "troubleshooting"}\r\n\r\n'
        b'event: delta\ndata: {"content": "a"}\n\n'
        b'event: done\ndata: {"usage": {"prompt_tokens": 9, "completion_tokens": 4, '
        b'"total_tokens": 13}, "partial": false}\n\n'
    )
    reader = AnswerReader()
    reader.start(200, [(b"Content-Type", b"text/event-stream; charset=utf-8")])
    for byte in stream:
        reader.feed(bytes([byte]))
    assert reader.agent == "troubleshooting"
    assert reader.usage == Usage(9, 4, 13)


def test_answer_reader_survives_an_answer_nested_past_the_parser_depth() -> None:
    """A JSON answer or SSE event too deep to parse yields no usage instead of an error."""
    deep = b"[" * 50_000 + b"]" * 50_000
    plain = AnswerReader()
    plain.start(201, [(b"content-type", b"application/json")])
    plain.feed(deep)
    plain.finish()
    stream = AnswerReader()
    stream.start(200, [(b"content-type", b"text/event-stream")])
    stream.feed(b"event: done\ndata: " + deep + b"\n\n")
    stream.finish()
    assert (plain.usage, stream.usage) == (None, None)


def test_answer_reader_without_done_has_no_usage() -> None:
    """A stream that ends with an error event (cut off upstream) reports no usage."""
    reader = AnswerReader()
    reader.start(200, [(b"content-type", b"text/event-stream"), (b"idempotent-replayed", b"true")])
    reader.feed(b'event: meta\ndata: {"agent": "planning"}\n\nevent: error\ndata: {}\n\n')
    reader.finish()
    assert (reader.agent, reader.usage, reader.replayed) == ("planning", None, True)
