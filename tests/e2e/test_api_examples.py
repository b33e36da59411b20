"""docs/api.md runs: every bash block, in order, with the real curl against the live stack.

Each block's ``# expect:`` line lists the HTTP statuses of its curl calls in order; a curl
wrapper reports them on stderr. The page's setup block is the one place where the test stands
in for the reader: ``GW``, ``KC`` and the dev users' tokens come from the fixtures instead of
``make token`` (``test_make_token_prints_a_token_the_gateway_accepts`` runs that command too).
A JSON sample after a block must have the fields, and types, of some JSON the block printed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from keycloak import KeycloakAdmin

from gateway.policy.policy_file import Policy
from tests.fixtures.live import LiveStack

pytestmark = [pytest.mark.keycloak, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "api.md"
# What the test provides instead of the setup block's lines.
PROVIDED = ("GW", "KC", "TOKEN", "MGR_TOKEN", "ADMIN_TOKEN")
DOC_USERNAME = "doc.example"
MARK = "@@"
TokenSource = Callable[[str], dict[str, Any]]

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    """A bash block of the page and the sample that follows it."""

    index: int
    line: int
    code: str
    sample: Any = None
    expect: list[int] | None = None

    @property
    def name(self) -> str:
        first = next(
            (ln for ln in self.code.splitlines() if ln.strip() and not ln.startswith("#")), ""
        )
        return f"L{self.line}:{first[:40]}"


@dataclass
class Outcome:
    """What running a block did."""

    statuses: list[int] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""


def blocks(text: str) -> list[Block]:
    """The page's bash blocks, each with the JSON sample directly after it (if any)."""
    found: list[Block] = []
    fences = list(_FENCE.finditer(text))
    for position, fence in enumerate(fences):
        if fence.group(1) != "bash":
            continue
        code = fence.group(2)
        block = Block(len(found), text.count("\n", 0, fence.start()) + 1, code)
        if match := re.match(r"# expect:((?: \d{3})+)\n", code):
            block.expect = [int(status) for status in match.group(1).split()]
        following = fences[position + 1] if position + 1 < len(fences) else None
        between = text[fence.end() : following.start()] if following else ""
        if following and following.group(1) == "json" and not between.strip():
            block.sample = json.loads(following.group(2))
        found.append(block)
    return found


def without_provided(code: str) -> str:
    """The block without the lines that set what the test provides."""
    pattern = re.compile(rf"^({'|'.join(PROVIDED)})=")
    return "\n".join(line for line in code.splitlines() if not pattern.match(line))


def script(page_blocks: list[Block]) -> str:
    """One bash script running every block, with markers between them."""
    lines = [
        "curl() { command curl -w '%{stderr}\\n" + MARK + 'status %{http_code}\\n\' "$@"; }',
    ]
    for block in page_blocks:
        marker = f"{MARK}block {block.index}"
        # A newline first: answers often end without one.
        lines += [f"printf '\\n{marker}\\n'; printf '\\n{marker}\\n' >&2"]
        lines.append(without_provided(block.code))
    return "\n".join(lines) + "\n"


def split(output: str) -> dict[int, str]:
    """Output by block index, using the markers."""
    parts: dict[int, str] = {}
    current: int | None = None
    for line in output.splitlines(keepends=True):
        if line.startswith(f"{MARK}block "):
            current = int(line.split()[1])
            parts[current] = ""
        elif current is not None:
            parts[current] += line
    return parts


def json_values(text: str) -> Iterator[Any]:
    """Every JSON value printed in text (headers and plain lines are skipped)."""
    decoder = json.JSONDecoder()
    position = 0
    while position < len(text):
        start = min((i for i in (text.find("{", position), text.find("[", position)) if i >= 0),
                    default=-1)  # fmt: skip
        if start < 0:
            return
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        yield value
        position = end


def same_shape(sample: Any, actual: Any) -> bool:
    """True when every field of sample is in actual with the same kind of value."""
    if sample is None or actual is None:
        return True
    if isinstance(sample, dict):
        return isinstance(actual, dict) and all(
            key in actual and same_shape(value, actual[key]) for key, value in sample.items()
        )
    if isinstance(sample, list):
        if not isinstance(actual, list):
            return False
        return not sample or (bool(actual) and same_shape(sample[0], actual[0]))
    if isinstance(sample, bool) or isinstance(actual, bool):
        return isinstance(sample, bool) and isinstance(actual, bool)
    if isinstance(sample, int | float):
        return isinstance(actual, int | float)
    return isinstance(actual, type(sample))


def delete_doc_user(admin: KeycloakAdmin) -> None:
    for user in admin.get_users({"username": DOC_USERNAME, "exact": True}):
        admin.delete_user(user["id"])


@pytest.fixture(scope="module")
def page_blocks() -> list[Block]:
    return blocks(PAGE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def outcomes(
    page_blocks: list[Block],
    live_stack: LiveStack,
    user_tokens: TokenSource,
    keycloak_admin: KeycloakAdmin,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[int, Outcome]]:
    """Run the whole page once, as a reader would, in a scratch folder."""
    delete_doc_user(keycloak_admin)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path_factory.mktemp("home")),
        "LC_ALL": "C.UTF-8",
        "GW": live_stack.gateway_url,
        "KC": f"{live_stack.keycloak_url.rstrip('/')}/realms/mro",
        "TOKEN": user_tokens("tech1")["access_token"],
        "MGR_TOKEN": user_tokens("mgr1")["access_token"],
        "ADMIN_TOKEN": user_tokens("admin1")["access_token"],
    }
    try:
        result = subprocess.run(
            ["bash", "-c", script(page_blocks)],
            cwd=tmp_path_factory.mktemp("api-examples"),
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        stdout, stderr = split(result.stdout), split(result.stderr)
        found: dict[int, Outcome] = {}
        for block in page_blocks:
            err = stderr.get(block.index, "")
            statuses = [int(s) for s in re.findall(rf"^{MARK}status (\d{{3}})$", err, re.M)]
            found[block.index] = Outcome(statuses, stdout.get(block.index, ""), err)
        yield found
    finally:
        delete_doc_user(keycloak_admin)


def test_the_page_has_runnable_examples(page_blocks: list[Block]) -> None:
    """Every bash block but the setup says what it expects; the setup sets what the test gives."""
    setup, *examples = page_blocks
    assert setup.expect is None
    assigned = {line.split("=", 1)[0] for line in setup.code.splitlines() if "=" in line}
    assert assigned == set(PROVIDED)
    assert [block.name for block in examples if block.expect is None] == []
    assert len(examples) >= 30


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "example" in metafunc.fixturenames:
        examples = [b for b in blocks(PAGE.read_text(encoding="utf-8")) if b.expect is not None]
        metafunc.parametrize("example", examples, ids=[b.name for b in examples])


def test_example_answers_as_documented(example: Block, outcomes: dict[int, Outcome]) -> None:
    """The block's curl calls answer the documented statuses; its sample matches an answer."""
    outcome = outcomes[example.index]
    assert outcome.statuses == example.expect, (
        f"docs/api.md line {example.line}\n{example.code}\nstdout:\n{outcome.stdout}\n"
        f"stderr:\n{outcome.stderr}"
    )
    if example.sample is not None:
        printed = list(json_values(outcome.stdout))
        assert any(same_shape(example.sample, value) for value in printed), (
            f"docs/api.md line {example.line}: the sample does not match any answer:\n"
            f"{outcome.stdout}"
        )


def _requests(code: str) -> Iterator[tuple[str, str]]:
    """(method, path) of each curl call to the gateway in code."""
    words = shlex.split(code.replace("\\\n", " "), comments=True)
    starts = [i for i, word in enumerate(words) if word.endswith("curl")]
    for start, end in zip(starts, [*starts[1:], len(words)], strict=False):
        args = words[start + 1 : end]
        args = args[: next((i for i, a in enumerate(args) if a == "|" or ")" in a), len(args))]
        url = next((a for a in args if a.startswith("$GW")), None)
        if url is None:
            continue
        method = "POST" if any(a.startswith(("-d", "--data")) for a in args) else "GET"
        if "-G" in args:
            method = "GET"
        if any(re.fullmatch(r"-s?I", a) for a in args):
            method = "HEAD"
        if "-X" in args:
            method = args[args.index("-X") + 1]
        path = url.removeprefix("$GW").split("?")[0] or "/"
        yield method, re.sub(r"\$[A-Z_]+", "x", path)


def test_every_route_of_the_policy_has_an_example(page_blocks: list[Block]) -> None:
    """Each method of each route in gateway/policy/policy.toml is called somewhere on the page."""
    policy = Policy.load(environment="development")
    covered: set[tuple[str, str]] = set()
    for block in page_blocks:
        for method, path in _requests(block.code):
            # Paths without a rule are the error examples (their statuses are checked above).
            if match := policy.match(method, path):
                covered.add((method, match.rule.path))
    missing = sorted(
        (method, rule.path)
        for rule in policy.routes
        for method in rule.methods
        if (method, rule.path) not in covered
    )
    assert missing == []


def test_make_token_prints_a_token_the_gateway_accepts(live_stack: LiveStack) -> None:
    """The setup block's `make -s token AS=tech1` gives a technician's access token."""
    env = {**os.environ, "MRO_KEYCLOAK_URL": live_stack.keycloak_url}
    result = subprocess.run(
        ["make", "-s", "token", "AS=tech1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    me = httpx.get(f"{live_stack.gateway_url}/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "tech1"
