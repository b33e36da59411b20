"""Token budgets in the response head: ``RateLimit-Policy``/``RateLimit`` members and the warning.

Each budget is a member with the quota unit ``qu="tokens"`` and a partition key (a short hash of
the budget's partition); ``MRO-Budget-Warning: user:day 82%`` names the budgets used past the
warning ratio. The members are appended to the fields the request rate limiter already set.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence

from gateway.budgets.store import LineState

__all__ = ["WARNING_HEADER", "add_members", "budget_fields"]

WARNING_HEADER = b"mro-budget-warning"


def _partition_key(partition: str) -> str:
    digest = hashlib.sha256(partition.encode()).digest()[:9]
    return ":" + base64.b64encode(digest).decode() + ":"


def _member(state: LineState) -> str:
    return f'"tokens-{state.line.scope}-{state.line.window}"'


def add_members(extra: list[tuple[bytes, bytes]], name: bytes, members: str) -> None:
    """Append list members to the field the rate limiter set, or add the field."""
    for index, (key, value) in enumerate(extra):
        if key == name:
            extra[index] = (key, value + b", " + members.encode())
            return
    extra.append((name, members.encode()))


def budget_fields(states: Sequence[LineState], now: float, warn_ratio: float) -> dict[bytes, str]:
    """The RateLimit-Policy and RateLimit members of states, and the warning when one is due."""
    policy, current, warnings = [], [], []
    for state in states:
        _, start, end = state.line.window.bounds(now)
        pk = _partition_key(state.line.partition)
        policy.append(f'{_member(state)};q={state.line.limit};w={round(end - start)};qu="tokens"')
        policy[-1] += f";pk={pk}"
        current.append(f"{_member(state)};r={state.remaining};t={math.ceil(state.reset)};pk={pk}")
        share = state.used / state.line.limit
        if share >= warn_ratio:
            warnings.append(f"{state.line.name} {min(100, math.floor(share * 100))}%")
    fields = {b"ratelimit-policy": ", ".join(policy), b"ratelimit": ", ".join(current)}
    if warnings:
        fields[WARNING_HEADER] = ", ".join(warnings)
    return fields
