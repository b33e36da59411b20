"""Default answers of the local server: deterministic, offline and recognisably not a model.

- A classification request (response_format json_schema named ``agent_classification``) gets
  the keyword classifier's choice among the schema's agent enum, as JSON.
- Any other json_schema gets a minimal instance of the schema; json_object gets ``{"answer"}``.
- A chat request gets a templated maintenance answer that quotes the question and names the
  assistant introduced by the system prompt ("You are the <title> assistant ...").
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.agents import AGENTS, Agent
from orchestrator.classifier import CLASSIFICATION_SCHEMA_NAME, classify_by_keywords
from orchestrator.fake_azure.tokens import text_of

_TITLE = re.compile(r"\byou are the (.{1,60}?) (?:assistant|agent)\b", re.IGNORECASE)

# Where each assistant sends the user; keyed by a word of its title.
_REFERENCES = (
    ("documentation", "AMM task and IPC figure"),
    ("troubleshooting", "TSM or FIM fault isolation task"),
    ("planning", "MPD task and the approved maintenance programme"),
    ("compliance", "applicable AD, SB and MEL item"),
)


def default_content(body: Mapping[str, Any]) -> str:
    """The answer to a chat completions request body when no script says otherwise."""
    messages = body.get("messages")
    turns: Sequence[Any] = messages if isinstance(messages, list) else []
    system = "\n".join(
        text_of(m.get("content"))
        for m in turns
        if isinstance(m, Mapping) and m.get("role") in ("system", "developer")
    )
    question = next(
        (
            text_of(m.get("content"))
            for m in reversed(turns)
            if isinstance(m, Mapping) and m.get("role") == "user"
        ),
        "",
    )
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_schema" and isinstance(response_format, Mapping):
        spec = response_format.get("json_schema")
        spec = spec if isinstance(spec, Mapping) else {}
        schema = spec.get("schema")
        schema = schema if isinstance(schema, Mapping) else {}
        if spec.get("name") == CLASSIFICATION_SCHEMA_NAME:
            return json.dumps(classification_answer(question, schema))
        return json.dumps(sample_instance(schema))
    if kind == "json_object":
        return json.dumps({"answer": chat_answer(system, question)})
    return chat_answer(system, question)


def classification_answer(question: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Agent, confidence and reasoning from keyword hits among the schema's agent enum."""
    agent_schema = schema.get("properties", {}).get("agent", {})
    names = [str(name) for name in agent_schema.get("enum", list(AGENTS))]
    if not names:
        return {"agent": "", "confidence": 0.0, "reasoning": "No agent to choose from."}
    options = [AGENTS.get(name) or Agent(name, name, "", "", "", (name,)) for name in names]
    choice = classify_by_keywords(question, options)
    return {
        "agent": choice.agent,
        "confidence": choice.confidence,
        "reasoning": f"Local test model. {choice.reasoning}",
    }


def chat_answer(system: str, question: str) -> str:
    """A templated, several-paragraph answer in the voice of the system prompt's assistant."""
    match = _TITLE.search(system)
    title = match.group(1).strip() if match else "maintenance"
    reference = next(
        (ref for word, ref in _REFERENCES if word in title.lower()), "approved maintenance data"
    )
    quoted = textwrap.shorten(" ".join(question.split()), width=280, placeholder=" ...")
    return (
        f"{title[:1].upper()}{title[1:]} assistant (local test model).\n\n"
        f'You asked: "{quoted}"\n\n'
        "1. Confirm the aircraft type, serial number and embodied modifications, then open the "
        f"current revision of the {reference} for that effectivity.\n"
        "2. Read the warnings and cautions of the task before starting, and make the aircraft "
        "safe as the task requires (electrical power, hydraulics, pneumatics, flight controls).\n"
        "3. Follow the approved procedure step by step. Take every torque value, limit and "
        "tolerance from the approved data, never from this answer.\n"
        "4. Record the work and have it certified by authorised staff under the "
        "organisation's procedures.\n\n"
        "This answer comes from the offline stand-in for Azure OpenAI: it exercises the "
        "system without a language model and carries no technical authority."
    )


def sample_instance(schema: Mapping[str, Any], depth: int = 0) -> Any:
    """A small value valid for simple schemas: required properties, first enum value, zeros."""
    if depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return sample_instance(schema[combinator][0], depth + 1)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", list(properties))
        return {
            name: sample_instance(properties.get(name, {}), depth + 1)
            for name in required
            if name in properties
        }
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "string":
        return "example"
    return None
