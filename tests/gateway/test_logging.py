"""JSON log lines: members, extras and the timestamp."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from gateway.logging import JsonFormatter


def test_record_becomes_one_json_object_with_extras() -> None:
    """Message, level and extra fields (the request id) are members of one object."""
    record = logging.LogRecord("gateway.access", logging.INFO, "f", 1, "request", None, None)
    record.request_id = "abc"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["msg"] == "request"
    assert entry["level"] == "info"
    assert entry["request_id"] == "abc"
    assert "\n" not in line


@pytest.mark.parametrize(
    "created", [1_900_000_000.0, 1_900_000_000.001, 1_900_000_000.5, 1_900_000_000.9999996, 0.25]
)
def test_timestamp_is_iso_utc_with_milliseconds(created: float) -> None:
    """The ts member is what datetime.isoformat writes, also across a cached second."""
    formatter = JsonFormatter()
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    for _ in range(2):
        record = logging.LogRecord("gateway", logging.INFO, "f", 1, "m", None, None)
        record.created = created
        assert json.loads(formatter.format(record))["ts"] == expected


def test_timestamp_follows_the_clock_to_the_next_second() -> None:
    """A record of a later second does not reuse the previous second's text."""
    formatter = JsonFormatter()
    stamps = []
    for created in (1_900_000_000.9, 1_900_000_001.1):
        record = logging.LogRecord("gateway", logging.INFO, "f", 1, "m", None, None)
        record.created = created
        stamps.append(json.loads(formatter.format(record))["ts"])
    assert stamps == [
        datetime.fromtimestamp(1_900_000_000.9, UTC).isoformat(timespec="milliseconds"),
        datetime.fromtimestamp(1_900_000_001.1, UTC).isoformat(timespec="milliseconds"),
    ]


def test_values_json_cannot_encode_are_written_as_text() -> None:
    """An extra that is not JSON (a set, an exception) becomes its str(), not an error."""
    record = logging.LogRecord("gateway", logging.INFO, "f", 1, "m", None, None)
    record.error = ValueError("boom")
    assert json.loads(JsonFormatter().format(record))["error"] == "boom"
