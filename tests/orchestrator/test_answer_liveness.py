"""When a ``streaming`` answer is abandoned: the bound, and how such an answer reads."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from orchestrator.answer_liveness import STALE_MARGIN_SECONDS, AnswerLiveness, stale_after
from orchestrator.models import MessageStatus
from orchestrator.settings import OrchestratorSettings
from tests.orchestrator.fakes import NOW, answer_row

BOUND = timedelta(seconds=60)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MRO_ORCHESTRATOR_* variable of the machine changes the defaults used here."""
    for name in list(os.environ):
        if name.startswith("MRO_ORCHESTRATOR_"):
            monkeypatch.delenv(name)


def liveness() -> AnswerLiveness:
    return AnswerLiveness(stale_after=BOUND, clock=lambda: NOW)


def test_default_bound_covers_the_model_call_with_its_retries() -> None:
    """Defaults: three attempts of 60 s + 5 s connect, two 8 s waits, then the margin."""
    assert stale_after(OrchestratorSettings()) == timedelta(
        seconds=3 * (60 + 5) + 2 * 8 + STALE_MARGIN_SECONDS
    )


def test_a_long_routing_call_sets_the_bound_when_it_is_the_longest_silence() -> None:
    """With a quick model and a slow classifier the classifier's timeout bounds the silence."""
    settings = OrchestratorSettings(
        azure_timeout_seconds=1,
        azure_connect_timeout_seconds=1,
        azure_max_retries=0,
        classifier_timeout_seconds=30,
    )
    assert stale_after(settings) == timedelta(seconds=30 + STALE_MARGIN_SECONDS)


def test_for_settings_uses_the_bound_and_the_clock() -> None:
    """The liveness built from settings compares against its own clock."""
    settings = OrchestratorSettings(azure_max_retries=0, classifier_timeout_seconds=1)
    built = AnswerLiveness.for_settings(settings, clock=lambda: NOW)
    assert built.stale_before() == NOW - stale_after(settings)


@pytest.mark.parametrize(
    ("age", "stale"),
    [(timedelta(0), False), (BOUND, False), (BOUND + timedelta(microseconds=1), True)],
    ids=["just-written", "at-the-bound", "past-the-bound"],
)
def test_streaming_answer_is_stale_only_past_the_bound(age: timedelta, stale: bool) -> None:
    """A streaming answer turns stale once it has not been written for longer than the bound."""
    assert liveness().is_stale(answer_row(MessageStatus.STREAMING, written=NOW - age)) is stale


@pytest.mark.parametrize(
    "status", [MessageStatus.COMPLETE, MessageStatus.PARTIAL, MessageStatus.FAILED]
)
def test_finished_answers_are_never_stale(status: MessageStatus) -> None:
    """Only a streaming answer can be abandoned; a final status stays what it is."""
    old = answer_row(status, written=NOW - 10 * BOUND, content="text")
    assert not liveness().is_stale(old)
    assert liveness().status_of(old) is status


def test_a_row_never_written_again_counts_from_its_creation() -> None:
    """Without updated_at (rows older than the column) the creation time is the last write."""
    assert liveness().is_stale(
        answer_row(MessageStatus.STREAMING, written=None, created=NOW - 2 * BOUND)
    )


@pytest.mark.parametrize(
    ("content", "shown"),
    [("The first words", MessageStatus.PARTIAL), ("", MessageStatus.FAILED)],
    ids=["with-text", "empty"],
)
def test_stale_answer_reads_as_partial_or_failed(content: str, shown: MessageStatus) -> None:
    """A stale answer with text is partial, without text failed; a live one stays streaming."""
    stale = answer_row(MessageStatus.STREAMING, written=NOW - 2 * BOUND, content=content)
    live = answer_row(MessageStatus.STREAMING, written=NOW, content=content)
    assert liveness().status_of(stale) is shown
    assert liveness().status_of(live) is MessageStatus.STREAMING


@pytest.mark.parametrize(
    ("age", "wait"),
    [
        (timedelta(0), 61),
        (timedelta(seconds=0.5), 60),
        (BOUND, 1),
        (10 * BOUND, 1),
    ],
    ids=["just-written", "half-a-second-ago", "at-the-bound", "long-stale"],
)
def test_seconds_until_stale_is_the_wait_until_a_retry_can_take_over(
    age: timedelta, wait: int
) -> None:
    """The wait is whole seconds strictly past the bound, at least 1 even when already stale."""
    written = NOW - age
    assert liveness().seconds_until_stale(written) == wait
    later = AnswerLiveness(stale_after=BOUND, clock=lambda: NOW + timedelta(seconds=wait))
    assert later.is_stale(answer_row(MessageStatus.STREAMING, written=written))
