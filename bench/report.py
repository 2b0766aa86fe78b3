"""The benchmark report: one section per benchmark, rendered as Markdown.

Every section carries the exact command that produced it, its table, the goals
with PASS/MISS next to the measured value, and notes on where the time goes.
"""

import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Goal:
    """A goal next to its result: `measured` against `limit` in the direction `at_least`."""

    name: str
    measured: float
    limit: float
    at_least: bool
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def render(self) -> str:
        sign = "≥" if self.at_least else "≤"
        verdict = "**PASS**" if self.met else "**MISS**"
        return (
            f"{verdict} {self.name}: {self.measured:.2f}{self.unit} "
            f"(goal {sign} {self.limit:g}{self.unit})"
        )


@dataclass
class Section:
    """One benchmark's result."""

    title: str
    command: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: str | None = None
    """Why the benchmark could not finish (reported, never hidden)."""

    def render(self) -> str:
        lines = [f"## {self.title}", "", f"`{self.command}`", ""]
        if self.failed:
            lines += [f"**FAILED**: {self.failed}", ""]
        if self.rows:
            lines.append("| " + " | ".join(self.header) + " |")
            lines.append("| " + " | ".join("---" for _ in self.header) + " |")
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            lines.append("")
        lines += [f"- {goal.render()}" for goal in self.goals]
        if self.goals:
            lines.append("")
        lines += [*self.notes]
        if self.notes:
            lines.append("")
        return "\n".join(lines)


def command_line(module: str, args: list[str]) -> str:
    """The command that reproduces a run of `module` with `args`."""
    return shlex.join([".venv/bin/python", "-m", module, *args])


def this_command(module: str) -> str:
    """The command line this process was started with, as `python -m module ...`."""
    return command_line(module, sys.argv[1:])


def render_report(machine: str, sections: list[Section], *, command: str, minutes: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    goals = [g for s in sections for g in s.goals]
    missed = [g for g in goals if not g.met]
    failed = [s.title for s in sections if s.failed]
    summary = f"{len(goals) - len(missed)} of {len(goals)} goals met"
    if missed:
        summary += "; missed: " + "; ".join(g.name for g in missed)
    if failed:
        summary += "; failed: " + "; ".join(failed)
    head = [
        "# Benchmarks",
        "",
        f"Generated {when} by `{command}` in {minutes:.1f} min. Every dataset is new random "
        "bytes written to new paths (rewriting a freed path looks 3-5x faster here); every "
        "ratio is against a baseline measured in the same run through the same S3 server.",
        "",
        f"Machine: {machine}",
        "",
        f"Summary: {summary}.",
        "",
    ]
    return "\n".join(head + [s.render() for s in sections])


def write_report(path: Path, text: str) -> None:
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; values need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
