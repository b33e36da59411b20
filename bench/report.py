"""Turn the measurements into Markdown tables and keep them in RESULTS.md, newest run first."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadgen import WrkResult
from upstream import JSON_BODY, SSE_EVENTS

TITLE = "# Proxy client benchmark results"
INTRO = (
    "Each section is one run of the benchmark described in README.md, newest first. "
    "Numbers from one machine and one moment: compare rows within a section, not across sections."
)


@dataclass(frozen=True)
class Measurement:
    """One workload against one target, with the CPU accounting taken around it."""

    result: WrkResult
    target_cpu_seconds: float
    other_cpu_share: float

    @property
    def cpu_us_per_request(self) -> float:
        requests = self.result.requests
        return self.target_cpu_seconds * 1e6 / requests if requests else 0.0


@dataclass
class TargetRun:
    """All rounds of all workloads against one target (the direct upstream, nginx or a proxy)."""

    name: str
    label: str
    idle_rss_kib: int = 0
    peak_rss_kib: int = 0
    rounds: dict[str, list[Measurement]] = field(default_factory=dict)

    def add(self, key: str, measurement: Measurement) -> None:
        self.rounds.setdefault(key, []).append(measurement)

    def best(self, key: str) -> Measurement:
        """The round with the highest throughput: the one least disturbed by other load."""
        return max(self.rounds[key], key=lambda m: m.result.rps)


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _rps(value: float) -> str:
    return f"{value:,.0f}"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def _get_table(runs: list[TargetRun], connections: int) -> list[str]:
    ceiling = runs[0].best("get").result.rps if runs else 0.0
    lines = [
        f"GET /json ({len(JSON_BODY)}-byte JSON), {connections} connections:",
        "",
        "| target | req/s | % of direct | p50 ms | p99 ms | server CPU µs/req | RSS idle → peak MiB"
        " | errors | other CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        m = run.best("get")
        share = f"{100 * m.result.rps / ceiling:.0f} %" if ceiling else "-"
        lines.append(
            f"| {run.label} | {_rps(m.result.rps)} | {share} | {_ms(m.result.p50_ms)}"
            f" | {_ms(m.result.p99_ms)} | {m.cpu_us_per_request:.0f}"
            f" | {_mib(run.idle_rss_kib)} → {_mib(run.peak_rss_kib)} | {m.result.errors}"
            f" | {100 * m.other_cpu_share:.0f} % |"
        )
    return lines


def _other_table(runs: list[TargetRun], connections: int, post_bytes: int) -> list[str]:
    direct_c1 = runs[0].best("get-c1").result.p50_ms if runs else 0.0
    lines = [
        f"POST /echo ({post_bytes} B body, streamed), SSE /sse ({SSE_EVENTS + 1} events, streamed),"
        f" both at {connections} connections; GET /json at 1 connection (one hop's latency,"
        " no queueing):",
        "",
        "| target | POST req/s | POST p99 ms | SSE req/s | SSE p99 ms | 1-conn req/s"
        " | 1-conn p50 ms | 1-conn p99 ms | hop adds (p50) µs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for index, run in enumerate(runs):
        post, sse, c1 = (run.best(key).result for key in ("post", "sse", "get-c1"))
        added = "-" if index == 0 else f"{1000 * (c1.p50_ms - direct_c1):.0f}"
        errors = post.errors + sse.errors + c1.errors
        label = run.label + (f" ({errors} errors)" if errors else "")
        lines.append(
            f"| {label} | {_rps(post.rps)} | {_ms(post.p99_ms)} | {_rps(sse.rps)}"
            f" | {_ms(sse.p99_ms)} | {_rps(c1.rps)} | {_ms(c1.p50_ms)} | {_ms(c1.p99_ms)}"
            f" | {added} |"
        )
    return lines


def render(
    runs: list[TargetRun], heading: str, notes: list[str], connections: int, post_bytes: int
) -> str:
    """One Markdown section: heading, run notes, then the two tables."""
    parts = [heading, "", *[f"- {note}" for note in notes], ""]
    parts += [*_get_table(runs, connections), "", *_other_table(runs, connections, post_bytes)]
    return "\n".join(parts) + "\n"


def prepend_section(path: Path, section: str) -> None:
    """Insert ``section`` at the top of RESULTS.md, below its title, keeping earlier runs."""
    previous = path.read_text() if path.exists() else ""
    older = previous[previous.find("\n## ") + 1 :] if "\n## " in previous else ""
    path.write_text(f"{TITLE}\n\n{INTRO}\n\n{section}" + (f"\n{older}" if older else ""))
