"""docker/*.Dockerfile: complete build context, pinned bases, hardened final stage."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from devstack.paths import ROOT
from tests.infra.dockerfile import Instruction, Stage, copy_sources, parse
from tests.infra.dockerignore import DockerIgnore
from tests.infra.images import is_pinned

DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
BUILD_TOOLS = ("gcc", "build-essential", "make ", "curl", "wget", "uv ", "/uv")


@pytest.fixture(params=DOCKERFILES, ids=lambda p: p.name)
def stages(request: pytest.FixtureRequest) -> list[Stage]:
    path: Path = request.param
    return parse(path)


def test_both_service_images_exist() -> None:
    """There is one Dockerfile for the gateway and one for the orchestrator."""
    assert {p.name for p in DOCKERFILES} >= {"gateway.Dockerfile", "orchestrator.Dockerfile"}


def test_base_images_are_pinned(stages: list[Stage]) -> None:
    """Every FROM names a versioned image (stage names aside), never latest or untagged."""
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.image not in names:
            assert is_pinned(stage.image), stage.image


def test_copied_sources_are_in_the_build_context(stages: list[Stage]) -> None:
    """Every COPY from the context names files that exist and .dockerignore keeps."""
    ignore = DockerIgnore.from_file(ROOT / ".dockerignore")
    copied = []
    for stage in stages:
        for instruction in stage.all("COPY"):
            origin, sources = copy_sources(instruction)
            if origin is not None:
                continue
            for source in sources:
                assert (ROOT / source).exists(), source
                files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
                for file in files:
                    if file.is_file() and "__pycache__" not in file.parts:
                        relative = file.relative_to(ROOT).as_posix()
                        assert not ignore.excludes(relative), relative
                        copied.append(relative)
    assert "uv.lock" in copied


def test_dependencies_install_from_the_lock_without_dev_tools(stages: list[Stage]) -> None:
    """The builder runs `uv sync --frozen --no-dev`, installing the project non-editable."""
    runs = [i.arguments for stage in stages[:-1] for i in stage.all("RUN")]
    assert any("uv sync --frozen --no-dev" in run and "--no-editable" in run for run in runs)


def test_final_stage_carries_only_the_venv(stages: list[Stage]) -> None:
    """The final stage copies the venv from the builder and installs no build tools."""
    final = stages[-1]
    copies = [copy_sources(i) for i in final.all("COPY")]
    assert copies == [("builder", ["/app/.venv"])]
    for run in final.all("RUN"):
        assert not any(tool in run.arguments for tool in BUILD_TOOLS), run.arguments
        assert "apt-get install" not in run.arguments


def test_final_stage_runs_as_a_fixed_non_root_uid(stages: list[Stage]) -> None:
    """The last USER is a numeric, non-zero uid (Kubernetes can verify runAsNonRoot)."""
    users = stages[-1].all("USER")
    assert users
    uid = users[-1].arguments.split(":")[0].strip()
    assert uid.isdigit()
    assert int(uid) >= 1000


def test_healthcheck_asks_healthz_with_python(stages: list[Stage]) -> None:
    """HEALTHCHECK probes /healthz with the interpreter (the image has no curl)."""
    checks = stages[-1].all("HEALTHCHECK")
    assert len(checks) == 1
    words = Instruction("CMD", checks[0].arguments.split("CMD", 1)[1]).words()
    assert words[0] == "python"
    assert "/healthz" in words[-1]


def test_entrypoint_is_a_console_script_of_the_project(stages: list[Stage]) -> None:
    """The image starts one of the console scripts pyproject.toml declares."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = stages[-1].all("ENTRYPOINT")[-1].words()
    assert entrypoint[0] in scripts


def test_the_two_images_build_the_distribution_the_same_way() -> None:
    """Gateway and orchestrator images share an identical builder stage (one distribution)."""
    builders = [
        [(i.keyword, i.arguments) for i in stage.instructions]
        for path in DOCKERFILES
        for stage in parse(path)
        if stage.name == "builder"
    ]
    assert len(builders) == len(DOCKERFILES)
    assert all(builder == builders[0] for builder in builders)
