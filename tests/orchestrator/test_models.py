"""The tables' types: timestamps are always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.models import UTCDateTime

COLUMN = UTCDateTime()


def test_naive_datetimes_are_refused() -> None:
    """Storing a naive datetime is an error rather than a silent local-time guess."""
    with pytest.raises(ValueError, match="naive"):
        COLUMN.process_bind_param(datetime(2030, 1, 1), sqlite.dialect())


def test_aware_datetimes_are_stored_as_utc() -> None:
    """An aware time is converted to UTC: naive UTC for SQLite, aware for PostgreSQL."""
    local = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    column = COLUMN
    assert column.process_bind_param(local, sqlite.dialect()) == datetime(2030, 1, 1, 10)
    stored = column.process_bind_param(local, postgresql.dialect())
    assert stored == local
    assert stored is not None
    assert stored.tzinfo is UTC


def test_read_values_come_back_aware_utc() -> None:
    """Values read back are aware UTC whatever the driver returned; None stays None."""
    column = COLUMN
    assert column.process_result_value(datetime(2030, 1, 1), sqlite.dialect()) == datetime(
        2030, 1, 1, tzinfo=UTC
    )
    offset = datetime(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    read = column.process_result_value(offset, postgresql.dialect())
    assert read is not None
    assert read.tzinfo is UTC
    assert column.process_result_value(None, sqlite.dialect()) is None
    assert column.process_bind_param(None, sqlite.dialect()) is None
