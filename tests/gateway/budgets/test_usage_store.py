"""The token_usage table: upserts that add up, grouped reports, and the batching recorder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.budgets.usage_store import UsageRecord, UsageRecorder, UsageStore
from gateway.db import create_engine, create_schema, session_factory
from tests.fixtures.postgres import fresh_schema, postgres_url

__all__ = ["postgres_url"]  # the session fixture, for the postgres runs

MAY_1, MAY_2, JUNE_1 = date(2025, 5, 1), date(2025, 5, 2), date(2025, 6, 1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgres":
        async with fresh_schema(request.getfixturevalue("postgres_url")) as engine:
            await create_schema(engine)
            yield engine
        return
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}")
    await create_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> UsageStore:
    return UsageStore(session_factory(engine))


def _record(day: date, subject: str, agent: str, total: int, **extra: int) -> UsageRecord:
    kind = "service" if subject.startswith("sa-") else "user"
    return UsageRecord(
        day=day,
        kind=kind,
        subject=subject,
        agent=agent,
        label=subject.upper(),
        tier="technician",
        prompt_tokens=total // 2,
        completion_tokens=total - total // 2,
        total_tokens=total,
        charged_tokens=extra.pop("charged", total),
        **extra,
    )


async def test_upserts_add_to_the_same_row(store: UsageStore) -> None:
    """Two writes for one day, caller and agent end up as one row with the sums."""
    await store.add([_record(MAY_1, "u1", "documentation", 100)])
    await store.add([_record(MAY_1, "u1", "documentation", 50, unmetered=1, charged=80)])
    (row,) = await store.report(first=MAY_1, last=MAY_1, group_by=["subject", "agent", "day"])
    assert (row.subject, row.kind, row.label, row.agent, row.day) == (
        "u1",
        "user",
        "U1",
        "documentation",
        MAY_1,
    )
    assert (row.requests, row.unmetered, row.total_tokens, row.charged_tokens) == (2, 1, 150, 180)
    assert (row.prompt_tokens, row.completion_tokens) == (75, 75)


async def test_report_groups_filters_and_keeps_to_the_days(store: UsageStore) -> None:
    """Groups sum over the chosen columns only; from and to are inclusive; filters narrow."""
    await store.add(
        [
            _record(MAY_1, "u1", "documentation", 100),
            _record(MAY_2, "u1", "compliance", 300),
            _record(MAY_2, "u2", "documentation", 10),
            _record(MAY_2, "sa-1", "planning", 1000),
            _record(JUNE_1, "u1", "documentation", 5000),
        ]
    )
    by_subject = await store.report(first=MAY_1, last=MAY_2, group_by=["subject"])
    assert [(r.subject, r.kind, r.total_tokens) for r in by_subject] == [
        ("sa-1", "service", 1000),
        ("u1", "user", 400),
        ("u2", "user", 10),
    ]
    assert all(r.agent is None and r.day is None for r in by_subject)
    by_agent = await store.report(first=MAY_1, last=JUNE_1, group_by=["agent"], subject="u1")
    assert [(r.agent, r.total_tokens) for r in by_agent] == [
        ("documentation", 5100),
        ("compliance", 300),
    ]
    (everything,) = await store.report(first=MAY_2, last=MAY_2, group_by=[], kind="user")
    assert (everything.requests, everything.total_tokens) == (2, 310)
    (nothing,) = await store.report(first=date(2024, 1, 1), last=date(2024, 1, 2), group_by=[])
    assert (nothing.requests, nothing.total_tokens) == (0, 0)


class FlakyStore(UsageStore):
    """Fails the first write, then writes normally; counts the batches it was given."""

    def __init__(self, inner: UsageStore) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def add(self, records: Sequence[UsageRecord]) -> None:
        self.batches.append(len(records))
        if len(self.batches) == 1:
            raise ConnectionError("database down")
        await self.inner.add(records)


async def test_recorder_batches_and_keeps_usage_while_the_database_fails(
    store: UsageStore,
) -> None:
    """Records with one key are summed before writing; a failed flush keeps them for the next."""
    flaky = FlakyStore(store)
    recorder = UsageRecorder(flaky)
    for _ in range(3):
        recorder.record(_record(MAY_1, "u1", "documentation", 10))
    recorder.record(_record(MAY_1, "u2", "documentation", 7))
    assert not await recorder.flush()
    recorder.record(_record(MAY_1, "u1", "documentation", 10))
    assert await recorder.flush()
    assert flaky.batches == [2, 2]
    rows = await store.report(first=MAY_1, last=MAY_1, group_by=["subject"])
    assert [(r.subject, r.requests, r.total_tokens) for r in rows] == [
        ("u1", 4, 40),
        ("u2", 1, 7),
    ]


async def test_recorder_writes_what_is_left_when_closed(store: UsageStore) -> None:
    """aclose stops the background flush and writes pending usage."""
    recorder = UsageRecorder(store, flush_seconds=3600)
    recorder.start()
    recorder.record(_record(MAY_1, "u1", "planning", 12))
    await recorder.aclose()
    (row,) = await store.report(first=MAY_1, last=MAY_1, group_by=["agent"])
    assert (row.agent, row.total_tokens) == ("planning", 12)
