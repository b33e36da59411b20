"""The shell blocks of README.md and docs/*.md name things that exist, checked without a stack.

Every ```sh, ```bash and ```console block is read as shell (the lines after a ``$`` prompt, for
console): ``make`` targets are Makefile targets, ``mro-admin`` commands and options exist,
``uv run`` starts an installed command, ``pytest`` paths and repository paths exist, ``python``
snippets import what exists, and every ``MRO_*`` variable is one a service, mro-admin, the local
stack or the test fixtures reads. docs/api.md's bash blocks are left to
tests/e2e/test_api_examples.py, which runs them, and docs/deploy.md's Kubernetes commands to
tests/infra/test_deploy_docs.py.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from devstack.paths import ROOT
from gateway.cli.commands import app as admin_app
from scripts.gen_config_docs import documented_variables
from tests.docs_shell import (
    ASSIGNMENT,
    COMMANDS,
    DOCS,
    ENVIRON_READ,
    VARIABLE,
    Block,
    Command,
    commands,
    fenced_blocks,
    program,
    shell_blocks,
)

# --- what the commands name --------------------------------------------------------------------

MAKE_VALUE_OPTIONS = {"-C", "-f", "-I", "-j", "-o", "-W"}
PYTEST_VALUE_OPTIONS = {"-m", "-k", "-p", "-c", "-o", "-W", "-n", "--tb", "--maxfail", "--timeout"}
KUBECTL_PATH_OPTIONS = {"-f", "-k", "--filename", "--kustomize", "kustomize"}


def make_problems(found: list[Command], makefile: Path) -> list[str]:
    """`make X` where X is no target of the Makefile."""
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", makefile.read_text(), re.MULTILINE))
    problems = []
    for command in found:
        name, args = program(command)
        values = {i + 1 for i, arg in enumerate(args) if arg in MAKE_VALUE_OPTIONS}
        for index, arg in enumerate(args if name == "make" else []):
            if index in values or arg.startswith("-") or ASSIGNMENT.match(arg):
                continue
            if arg not in targets:
                problems.append(f"{command.where}: make {arg}: no such target")
    return problems


def _options(chain: list[Any]) -> dict[str, Any]:
    """The options of a command path (typer's click objects), by name."""
    return {
        opt: param
        for command in chain
        for param in command.params
        if param.param_type_name == "option"
        for opt in [*param.opts, *param.secondary_opts]
    }


def admin_problems(found: list[Command], app: typer.Typer) -> list[str]:
    """`mro-admin` commands, subcommands and options that do not exist, or whose help fails."""
    problems = []
    for command in found:
        name, args = program(command)
        if name != "mro-admin":
            continue
        words = [word.strip("[]") for word in args]  # a synopsis brackets optional parts
        chain: list[Any] = [typer.main.get_command(app)]
        path: list[str] = []
        index = 0
        while hasattr(chain[-1], "commands") and index < len(words):
            word, index = words[index], index + 1
            if word.startswith("-"):
                option = _options(chain).get(word)
                index += option is not None and not option.is_flag
            elif (sub := chain[-1].commands.get(word)) is not None:
                chain.append(sub)
                path.append(word)
            else:
                problems.append(f"{command.where}: mro-admin {' '.join([*path, word])}: unknown")
                break
        known = {*_options(chain), "--help"}
        for word in words:
            if word.startswith("-") and word.split("=", 1)[0] not in known:
                problems.append(f"{command.where}: mro-admin {' '.join(path)}: no option {word}")
        if CliRunner().invoke(app, [*path, "--help"]).exit_code != 0:
            problems.append(f"{command.where}: mro-admin {' '.join(path)} --help fails")
    return problems


def uv_run_problems(found: list[Command], bin_dir: Path) -> list[str]:
    """`uv run X` where X is not installed in the project's environment."""
    return [
        f"{command.where}: uv run {name}: not installed"
        for command in found
        if command.words[:2] == ("uv", "run")
        for name in [program(command)[0]]
        if not (bin_dir / name).exists()
    ]


def pytest_problems(found: list[Command], root: Path) -> list[str]:
    """`pytest` paths or node ids that do not exist."""
    problems = []
    for command in found:
        name, args = program(command)
        values = {i + 1 for i, arg in enumerate(args) if arg in PYTEST_VALUE_OPTIONS}
        for index, arg in enumerate(args if name == "pytest" else []):
            if index in values or arg.startswith("-"):
                continue
            path, _, node = arg.partition("::")
            test = node.split("::")[-1].split("[")[0]
            if not (root / path).exists():
                problems.append(f"{command.where}: pytest {path}: no such path")
            elif test and not re.search(rf"(def|class) {test}\b", (root / path).read_text()):
                problems.append(f"{command.where}: pytest {arg}: no such test")
    return problems


def kubectl_problems(found: list[Command]) -> list[str]:
    """`kubectl rollout status` given several resources (kubectl refuses all but one), and
    `kubectl patch -p` documents that are not JSON."""
    problems = []
    for where, words in ((c.where, c.words) for c in found if c.words[0] == "kubectl"):
        if "status" in words and sum("/" in word for word in words) > 1:
            problems.append(f"{where}: kubectl rollout status takes one resource")
        patches = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-p", "--patch")]
        for patch in (p for p in patches if p.startswith("{")):
            try:
                json.loads(patch)
            except ValueError as exc:
                problems.append(f"{where}: kubectl patch -p is not JSON: {exc}")
    return problems


def repository_folders(root: Path) -> set[str]:
    """The repository's top-level folders (git-ignored ones left out)."""
    ignored = {line.strip("/") for line in (root / ".gitignore").read_text().splitlines()}
    return {
        p.name for p in root.iterdir() if p.is_dir() and p.name[0] != "." and p.name not in ignored
    }


def path_problems(found: list[Command], root: Path) -> list[str]:
    """Repository paths (`infra/...`, `scripts/...`) named by commands that do not exist."""
    folders, problems = repository_folders(root), []
    for command in found:
        words = command.words
        if words[0] == "kubectl":  # `keycloak/mro-keycloak` there is a resource, not a path
            words = tuple(w for i, w in enumerate(words) if words[i - 1] in KUBECTL_PATH_OPTIONS)
        for word in words:
            if "://" in word or word.startswith("$"):
                continue
            for part in re.split(r"[=:]", word):
                part = part.rstrip(",.;)")
                if part.split("/")[0] in folders and "/" in part and not list(root.glob(part)):
                    problems.append(f"{command.where}: {part}: no such path")
    return problems


def python_problems(found: list[Command]) -> list[str]:
    """`python -c` code and here-documents that do not parse or import what does not exist."""
    problems = []
    for command in found:
        name, args = program(command)
        if name not in ("python", "python3") or not args or args[0] not in ("-c", "-"):
            continue
        code = args[1] if args[0] == "-c" and len(args) > 1 else command.stdin
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            problems.append(f"{command.where}: python does not parse: {exc.msg}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                wanted = [(node.module, a.name) for a in node.names if a.name != "*"]
            elif isinstance(node, ast.Import):
                wanted = [(alias.name, "") for alias in node.names]
            else:
                continue
            for module, name in wanted:
                try:
                    imported = importlib.import_module(module)
                    if name and not hasattr(imported, name):
                        importlib.import_module(f"{module}.{name}")  # a submodule, then
                except ImportError:
                    problems.append(f"{command.where}: cannot import {name or module} ({module})")
    return problems


def read_variables(root: Path) -> set[str]:
    """MRO_* variables read by the settings, mro-admin, the local stack or the tests."""
    stack = [*(root / "infra/local/devstack").glob("*.py"), *(root / "tests/fixtures").glob("*.py")]
    named = {name for source in stack for name in VARIABLE.findall(source.read_text())}
    read = {
        name
        for source in (root / "tests").rglob("*.py")
        for name in ENVIRON_READ.findall(source.read_text())
    }
    return documented_variables() | named | read


def variable_problems(blocks: list[Block], known: set[str]) -> list[str]:
    """MRO_* names in shell blocks that nothing reads."""
    return [
        f"{block.page}:{block.line + block.text.count(chr(10), 0, match.start()) + 1}: "
        f"{match.group()} is read by nothing"
        for block in blocks
        for match in VARIABLE.finditer(block.text)
        if match.group() not in known
    ]


def unmarked_command_blocks(blocks: Iterable[Block]) -> list[str]:
    """Blocks without a shell language that hold commands (so nothing here would check them)."""
    problems = []
    for block in blocks:
        lines = [line.strip() for line in block.text.splitlines() if line.strip()]
        first = lines[0].removeprefix("$ ").split(" ")[0] if lines else ""
        if block.lang in ("", "text") and lines and (first in COMMANDS or lines[0][:2] == "$ "):
            problems.append(f"{block.page}:{block.line}: mark the block ```sh (or ```console)")
    return problems


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def found() -> list[Command]:
    return commands(shell_blocks())


def test_the_pages_have_commands_of_every_kind_checked(found: list[Command]) -> None:
    """The extraction finds make, uv run, pytest, mro-admin, python and kubectl commands."""
    programs = {program(command)[0] for command in found}
    assert {"make", "pytest", "mro-admin", "python", "kubectl", "docker"} <= programs
    assert any(command.words[:2] == ("uv", "run") for command in found)


def test_make_targets_exist(found: list[Command]) -> None:
    """Every `make X` names a target of the Makefile."""
    assert make_problems(found, ROOT / "Makefile") == []


def test_mro_admin_commands_exist(found: list[Command]) -> None:
    """Every `mro-admin` command path and option exists, and its --help runs."""
    assert admin_problems(found, admin_app) == []


def test_uv_run_starts_installed_commands(found: list[Command]) -> None:
    """Every `uv run X` starts a command installed in the project's environment."""
    assert uv_run_problems(found, Path(sys.executable).parent) == []


def test_pytest_paths_exist(found: list[Command]) -> None:
    """Every path and node id given to pytest exists."""
    assert pytest_problems(found, ROOT) == []


def test_kubectl_commands_are_well_formed(found: list[Command]) -> None:
    """`rollout status` names one resource, the only form kubectl accepts; patches are JSON."""
    assert kubectl_problems(found) == []


def test_repository_paths_exist(found: list[Command]) -> None:
    """Every repository path a command names (infra/, scripts/, keycloak/, ...) exists."""
    assert path_problems(found, ROOT) == []


def test_python_snippets_import_what_exists(found: list[Command]) -> None:
    """`python -c` code and here-documents parse and import names that exist."""
    assert python_problems(found) == []


def test_variables_are_read_by_something() -> None:
    """Every MRO_* variable of a shell block is read by a service, mro-admin, the stack or tests."""
    assert variable_problems(shell_blocks(), read_variables(ROOT)) == []


def test_command_blocks_are_marked_as_shell() -> None:
    """A block of commands says its shell language, so the checks here see it."""
    assert unmarked_command_blocks(b for page in DOCS for b in fenced_blocks(page)) == []


# --- the checks catch what they are for --------------------------------------------------------


def _block(text: str, lang: str = "sh") -> list[Command]:
    return commands([Block("docs/x.md", 10, lang, text)])


def test_lines_are_joined_and_comments_and_here_documents_left_out() -> None:
    """Continuations join, comments go, a here-document is the command's input, not commands."""
    text = "uv run pytest \\\n  tests/a  # ok's\npython - <<'EOF'\nimport x\nEOF\nmake dev"
    found = _block(text)
    assert [c.words for c in found] == [
        ("uv", "run", "pytest", "tests/a"),
        ("python", "-"),
        ("make", "dev"),
    ]
    assert found[1].stdin == "import x"
    assert found[2].where == "docs/x.md:16"


def test_console_blocks_keep_only_prompted_lines() -> None:
    """In a console block, output lines are not commands."""
    found = _block("$ MRO_ADMIN_TOKEN=$T mro-admin audit search\nAT ACTION\nerror: 403", "console")
    assert [c.words for c in found] == [("mro-admin", "audit", "search")]


def test_substitutions_and_pipes_split_commands() -> None:
    """`$(make ...)` and pipes yield their own commands; a quoted multi-line argument stays one."""
    found = _block("TOKEN=$(make -s token AS=tech1)\ncurl -d '{\"a\":\n 1}' x | jq .")
    assert [c.words[0] for c in found] == ["make", "curl", "jq"]


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("make deploy", lambda f: make_problems(f, ROOT / "Makefile")),
        ("uv run mro-admin users invite bob", lambda f: admin_problems(f, admin_app)),
        ("mro-admin api-keys list --owner x --colour", lambda f: admin_problems(f, admin_app)),
        ("uv run mro-nothing", lambda f: uv_run_problems(f, Path(sys.executable).parent)),
        ("uv run pytest tests/nowhere -q", lambda f: pytest_problems(f, ROOT)),
        ("uv run pytest tests/test_docs_commands.py::test_x", lambda f: pytest_problems(f, ROOT)),
        ("kubectl apply -k infra/k8s/overlays/staging", lambda f: path_problems(f, ROOT)),
        ("kubectl -n mro rollout status deploy/a deploy/b", kubectl_problems),
        ("kubectl patch deploy x -p '{\"spec\": {'", kubectl_problems),
        ("uv run python scripts/nothing.py", lambda f: path_problems(f, ROOT)),
        ("python -c 'from devstack.keycloak import nothing'", python_problems),
        ("python -c 'print('", python_problems),
        ("uv run python - <<'EOF'\nimport devstack.nothing\nEOF", python_problems),
    ],
)
def test_a_wrong_name_is_reported(text: str, check: Callable[[list[Command]], list[str]]) -> None:
    """Each check names the command whose target, path, option or import does not exist."""
    problems = check(_block(text))
    assert len(problems) == 1
    assert problems[0].startswith("docs/x.md:11: ")


def test_an_unread_variable_is_reported() -> None:
    """A variable no settings class, stack or test reads is named with its line."""
    block = Block("docs/x.md", 10, "sh", "export MRO_GATEWAY_PORT=1\nMRO_GATEWAY_PROT=1 make dev")
    assert variable_problems([block], read_variables(ROOT)) == [
        "docs/x.md:12: MRO_GATEWAY_PROT is read by nothing"
    ]


def test_an_unmarked_command_block_is_reported() -> None:
    """A plain block starting with a command is reported; one of output is not."""
    blocks = [
        Block("docs/x.md", 3, "", "kubectl get pods\n"),
        Block("docs/x.md", 7, "text", "$ mro-admin health\nready\n"),
        Block("docs/x.md", 11, "text", "HTTP/1.1 200 OK\n"),
    ]
    assert unmarked_command_blocks(blocks) == [
        "docs/x.md:3: mark the block ```sh (or ```console)",
        "docs/x.md:7: mark the block ```sh (or ```console)",
    ]
