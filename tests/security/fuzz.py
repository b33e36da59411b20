"""Malformed requests generated from an OpenAPI document, property style.

For every operation the generator draws, from a seeded random source, requests that break the
document's promises: hostile path segments, query values of the wrong type or size, repeated
parameters, bodies that are not JSON, JSON of the wrong shape, fields of the wrong type, deep
nesting and wrong content types. Bodies are malformed by construction (every declared field gets
a value its schema refuses), so no draw can create, change or delete anything real.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

NASTY = [
    "",
    " ",
    "\x00",
    "null",
    "-1",
    "99999999999999999999999999",
    "1e309",
    "NaN",
    "../../../etc/passwd",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "%",
    "%zz",
    "\u202e\u2066",
    "\U0001f600" * 64,
    "A" * 8000,
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}",
    "true",
    "[]",
]


@dataclass(frozen=True)
class Operation:
    """One method and path template of the document."""

    method: str
    path: str
    parameters: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    def of(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.parameters if p.get("in") == where]


@dataclass
class Draw:
    """One malformed request (arguments for ``httpx.Client.request``) and how it was made."""

    kind: str
    method: str
    url: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of an OpenAPI 3 document, with request-body schemas resolved."""
    found = []
    for path, item in document["paths"].items():
        for method, spec in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            content = spec.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            body = resolve(schema, document) if schema else None
            found.append(Operation(method.upper(), path, tuple(spec.get("parameters", ())), body))
    return found


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """schema with a top-level ``$ref`` followed."""
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
    return schema


def _types(schema: dict[str, Any], document: dict[str, Any]) -> set[str]:
    schema = resolve(schema, document)
    if "anyOf" in schema or "oneOf" in schema:
        return set().union(
            *(_types(s, document) for s in schema.get("anyOf", schema.get("oneOf", [])))
        )
    if "type" in schema:
        return {schema["type"]}
    return {"object"} if "properties" in schema else {"any"}


def wrong_value(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A JSON value the schema refuses (a string for objects, an object for everything else)."""
    types = _types(schema, document)
    if "object" in types:
        return "not-an-object" if "string" not in types else [["nested"]]
    return {"unexpected": ["object"]}


def _fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def _plain_path(operation: Operation, rng: random.Random) -> str:
    return _fill(
        operation.path, {p["name"]: f"fz{rng.randrange(10**9)}" for p in operation.of("path")}
    )


def draws(
    operation: Operation, document: dict[str, Any], rng: random.Random, count: int
) -> Iterator[Draw]:
    """count malformed requests for operation."""
    makers = [_hostile_path, _wrong_query, _oversize_query, _repeated_query, _bad_json]
    makers += [_wrong_json_type, _wrong_fields, _deep_nesting, _wrong_content_type]
    if not operation.of("path"):
        makers.remove(_hostile_path)
    if not operation.of("query"):
        makers = [m for m in makers if m not in (_wrong_query, _oversize_query, _repeated_query)]
    for maker in rng.sample(makers, min(count, len(makers))):
        yield maker(operation, document, rng)


def _hostile_path(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    values = {p["name"]: rng.choice(NASTY) for p in op.of("path")}
    return Draw("hostile path segment", op.method, _fill(op.path, values))


def _wrong_query(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    params = [(p["name"], rng.choice(NASTY)) for p in op.of("query")]
    return Draw("query values of the wrong type", op.method, _plain_path(op, rng), params)


def _oversize_query(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    params = [(p["name"], "9" * 5000) for p in op.of("query")]
    return Draw("oversize query values", op.method, _plain_path(op, rng), params)


def _repeated_query(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    params = [(p["name"], v) for p in op.of("query") for v in ("1", "x", "")]
    return Draw("repeated query parameters", op.method, _plain_path(op, rng), params)


def _json_draw(kind: str, op: Operation, rng: random.Random, body: bytes) -> Draw:
    headers = {"Content-Type": "application/json"}
    return Draw(kind, op.method, _plain_path(op, rng), headers=headers, content=body)


def _bad_json(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    body = rng.choice([b"{", b'{"a": }', b"\xff\xfe\x00", b"{'single': 'quotes'}", b"NaN"])
    return _json_draw("body that is not JSON", op, rng, body)


def _wrong_json_type(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    body = rng.choice([b"[]", b'"text"', b"42", b"true", b"[{}]"])
    return _json_draw("JSON of the wrong type", op, rng, body)


def _wrong_fields(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    properties = (op.body or {}).get("properties", {"title": {"type": "string"}})
    body = {name: wrong_value(schema, document) for name, schema in properties.items()}
    return _json_draw("fields of the wrong type", op, rng, json.dumps(body).encode())


def _deep_nesting(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    depth = rng.choice([5_000, 50_000])
    return _json_draw("deeply nested JSON", op, rng, b"[" * depth + b"]" * depth)


def _wrong_content_type(op: Operation, document: dict[str, Any], rng: random.Random) -> Draw:
    content_type = rng.choice(
        [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=utf-32",
            "application/xml",
        ]
    )
    return Draw(
        f"content type {content_type}",
        op.method,
        _plain_path(op, rng),
        headers={"Content-Type": content_type},
        content=b"<a>1</a>&b=2--x",
    )
