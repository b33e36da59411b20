"""JSON log lines."""

from __future__ import annotations

import json
import logging

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
