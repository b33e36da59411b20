"""The UI's pure helpers, run in Chromium as the page loads them (only the static router serves)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page

from gateway import problems
from gateway.routes.web import create_router
from tests.gateway.harness import serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def static_url() -> Iterator[str]:
    """The gateway's static UI routes alone, served over HTTP."""
    app = FastAPI()
    problems.install(app)
    app.include_router(create_router())
    with serve(app) as url:
        yield url


@pytest.fixture
def module_page(chromium: Browser, static_url: str) -> Iterator[Page]:
    """A page on a module URL, so the others import relative to it under the real CSP."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{static_url}/app/dom.js")
    yield page
    context.close()


def _parse(page: Page, chunks: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = page.evaluate(
        """async (chunks) => {
            const { EventStreamParser } = await import("./sse.js");
            const parser = new EventStreamParser();
            const out = [];
            chunks.forEach((chunk, i) => out.push(...parser.feed(chunk, i === chunks.length - 1)));
            return out;
        }""",
        chunks,
    )
    return events


def test_events_split_anywhere_parse_the_same(module_page: Page) -> None:
    """Chunk boundaries inside fields or between CR and LF do not change the events."""
    stream = (
        'event: meta\r\ndata: {"agent":"troubleshooting"}\r\n\r\n'
        ": keep-alive comment\n\n"
        'event: delta\ndata: {"content":"a"}\n\n'
        "event: done\rdata: line one\rdata: line two\r\r"
    )
    whole = _parse(module_page, [stream])
    assert whole == [
        {"event": "meta", "data": '{"agent":"troubleshooting"}', "id": None},
        {"event": "delta", "data": '{"content":"a"}', "id": None},
        {"event": "done", "data": "line one\nline two", "id": None},
    ]
    for size in (1, 2, 3, 7):
        pieces = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert _parse(module_page, pieces) == whole, size


def test_unfinished_event_and_unnamed_data(module_page: Page) -> None:
    """Data without event name is a "message"; an event cut off before its blank line is dropped."""
    events = _parse(module_page, ["data:x\n\nevent: delta\ndata: cut"])
    assert events == [{"event": "message", "data": "x", "id": None}]


def test_retry_after_reads_seconds_and_dates(module_page: Page) -> None:
    """Retry-After as delta-seconds or an HTTP date becomes seconds to wait."""
    values = module_page.evaluate(
        """async () => {
            const { retryAfterSeconds } = await import("./api.js");
            const now = Date.parse("Wed, 21 Oct 2026 07:28:00 GMT");
            return [
                retryAfterSeconds("17", now),
                retryAfterSeconds("Wed, 21 Oct 2026 07:28:30 GMT", now),
                retryAfterSeconds("soon", now) ?? null,
                retryAfterSeconds(null, now) ?? null,
            ];
        }"""
    )
    assert values == [17, 30, None, None]


def test_problem_details_become_sentences(module_page: Page) -> None:
    """A 429 names the wait; a 422 lists field messages without the validator's prefix."""
    lines = module_page.evaluate(
        """async () => {
            const { describe } = await import("./feedback.js");
            const { ApiError } = await import("./api.js");
            const limited = describe(new ApiError({ status: 429, retryAfter: 12 }));
            const invalid = describe(new ApiError({
                status: 422, title: "Validation failed", detail: "The request did not validate.",
                errors: [{ loc: ["body", "base_station"], msg: "Value error, an IATA code" }],
            }));
            return [limited.title, ...limited.lines, invalid.title, ...invalid.lines];
        }"""
    )
    assert lines == [
        "Too many requests",
        "Too many requests in a short time. Try again in 12 seconds.",
        "Validation failed",
        "The request did not validate.",
        "base station: An IATA code.",
    ]


def test_titles_are_cut_between_words(module_page: Page) -> None:
    """A long first question titles the conversation with whole words and an ellipsis."""
    titles = module_page.evaluate(
        """async () => {
            const { titleFrom } = await import("./chat.js");
            return [titleFrom("  Short   question? "), titleFrom("word ".repeat(40))];
        }"""
    )
    assert titles[0] == "Short question?"
    assert titles[1].endswith("word…")
    assert len(titles[1]) <= 80


def test_budget_warnings_read_as_sentences(module_page: Page) -> None:
    """MRO-Budget-Warning members become one sentence each; unknown text gives nothing."""
    sentences = module_page.evaluate(
        """async () => {
            const { budgetWarning } = await import("./api.js");
            return [budgetWarning("user:day 82%"), budgetWarning("user:day 81%, org:month 95%"),
                    budgetWarning("garbage")];
        }"""
    )
    assert sentences == [
        "82 % of your daily token budget is used.",
        "81 % of your daily token budget is used. 95 % of the org monthly token budget is used.",
        "",
    ]
