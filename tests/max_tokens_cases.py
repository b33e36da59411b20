"""The ``max_tokens`` values gateway and orchestrator both refuse, as JSON texts.

One table for the parser's unit tests, the orchestrator's API test and the attack on the running
gateway, so that the two services are checked against the same shapes. Each text is written into
the body as it stands (``1e400`` and ``NaN`` cannot come from ``json.dumps`` of a Python value).
"""

from __future__ import annotations

REFUSED_MAX_TOKENS: dict[str, str] = {
    "huge-integer": "1" + "0" * 400,
    "over-the-maximum": "16385",
    "negative": "-5",
    "zero": "0",
    "string": '"16384"',
    "float": "16384.0",
    "exponent": "1e3",
    "overflowing-float": "1e400",
    "nan": "NaN",
    "infinity": "-Infinity",
    "boolean": "true",
    "nested-object": '{"value": 64}',
    "list": "[64]",
}


def message_body(max_tokens: str, content: str = "Where is the hydraulic accumulator?") -> bytes:
    """A message body whose max_tokens is the JSON text max_tokens."""
    return f'{{"content": "{content}", "max_tokens": {max_tokens}}}'.encode()
