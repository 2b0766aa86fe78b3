"""`make demo`: the whole round trip on the embedded stack, with a summary table.

Generates a sample dataset (new random content each run), starts the stack on
free ports (state under `var/demo/<timestamp>`), ingests the dataset with
`archiver ingest --archive` (which returns once the dataset is packed and its
archive job exists, so packing counts in the ingest phase), waits for SciCat's
`datasetOnArchiveDisk`,
retrieves it with `archiver retrieve`, and compares every retrieved file with
its original byte for byte. Exit status 0 only if everything passed; the stack
is always stopped.
"""

import filecmp
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table

from devstack.processes import StartupError, tool_path
from devstack.sample_dataset import generate_sample_dataset
from devstack.stack import SCICAT_USERS, DevStack, StackPorts

OWNER_GROUP = "group1"
ARCHIVE_TIMEOUT_S = 300.0
ARCHIVE_FAILURES = ("missingFilesError", "scheduleArchiveJobFailed")


class DemoFailed(Exception):
    """A step of the demo failed; `str()` says which and why."""


@dataclass
class Phase:
    name: str
    seconds: float
    nbytes: int | None = None
    scicat: str = ""


@dataclass
class Demo:
    console: Console
    phases: list[Phase] = field(default_factory=list)

    def timed(self, name: str, step: Callable[[], Any], nbytes: int | None = None) -> Any:
        self.console.rule(name)
        started = time.monotonic()
        result = step()
        self.phases.append(Phase(name, time.monotonic() - started, nbytes))
        return result


def _files_below(root: Path) -> dict[str, Path]:
    return {str(path.relative_to(root)): path for path in sorted(root.rglob("*")) if path.is_file()}


def compare_trees(original: Path, retrieved: Path) -> list[str]:
    """Every difference between the two trees' files (missing, extra, different bytes)."""
    want, got = _files_below(original), _files_below(retrieved)
    problems = [f"missing: {p}" for p in sorted(set(want) - set(got))]
    problems += [f"unexpected: {p}" for p in sorted(set(got) - set(want))]
    for relative in sorted(set(want) & set(got)):
        if not filecmp.cmp(want[relative], got[relative], shallow=False):
            problems.append(f"differs: {relative}")
    return problems


class Scicat:
    """Reads the dataset's lifecycle as SciCat's admin."""

    def __init__(self, http: httpx.Client, url: str) -> None:
        self._http = http
        self._url = url
        user, password = SCICAT_USERS["admin"]
        login = http.post(f"{url}/v3/auth/login", json={"username": user, "password": password})
        login.raise_for_status()
        self._headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    def lifecycle(self, pid: str) -> dict[str, Any]:
        reply = self._http.get(
            f"{self._url}/v3/Datasets/{quote(pid, safe='')}", headers=self._headers
        )
        reply.raise_for_status()
        return reply.json().get("datasetlifecycle") or {}


def _archive_status(lifecycle: dict[str, Any]) -> str:
    return f"archive: {lifecycle.get('archiveStatusMessage') or '-'}"


def _retrieve_status(lifecycle: dict[str, Any]) -> str:
    check = "intact" if lifecycle.get("retrieveIntegrityCheck") else "not checked"
    return f"retrieve: {lifecycle.get('retrieveStatusMessage') or '-'} ({check})"


def _run(argv: list[str], *, capture: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "120")}
    return subprocess.run(
        argv, text=True, env=env, check=False, stdout=subprocess.PIPE if capture else None
    )


def run_demo(base: Path, console: Console) -> bool:
    state = base / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    sample_dir, retrieved_dir = state / "sample", state / "retrieved"
    demo = Demo(console)
    sample = demo.timed("generate sample dataset", lambda: generate_sample_dataset(sample_dir))
    demo.phases[-1].nbytes = sample.total_bytes
    console.print(f"{sample.files} files, {sample.total_bytes / 1024**2:.1f} MiB in {sample_dir}")
    stack = DevStack(state / "stack", StackPorts.choose("auto"), lts_backend="posix")
    stack_json = stack.state_dir / "stack.json"
    archiver = tool_path("archiver")
    try:
        demo.timed("start the stack", stack.start)
        with httpx.Client(timeout=30.0) as http:
            scicat = Scicat(http, stack.scicat_url)

            def ingest() -> str:
                done = _run(
                    [
                        archiver, "ingest", str(sample_dir),
                        "--owner-group", OWNER_GROUP,
                        "--stack", str(stack_json),
                        "--archive",
                        "--chunk-size", "32MiB",
                    ],
                    capture=True,
                )  # fmt: skip
                if done.returncode != 0:
                    msg = f"archiver ingest exited {done.returncode}"
                    raise DemoFailed(msg)
                return done.stdout.split()[0]  # the pid (the archive job id follows)

            pid = demo.timed(
                "ingest + pack (hash, register, upload, datablocks)", ingest, sample.total_bytes
            )
            console.print(f"dataset {pid}")
            demo.phases[-1].scicat = _archive_status(scicat.lifecycle(pid))

            def archive() -> dict[str, Any]:
                deadline = time.monotonic() + ARCHIVE_TIMEOUT_S
                while time.monotonic() < deadline:
                    lifecycle = scicat.lifecycle(pid)
                    status = lifecycle.get("archiveStatusMessage")
                    if status == "datasetOnArchiveDisk":
                        return lifecycle
                    if status in ARCHIVE_FAILURES:
                        msg = f"archiving failed: {status}: {lifecycle.get('archiveReturnMessage')}"
                        raise DemoFailed(msg)
                    time.sleep(0.25)
                msg = f"{pid} was not on archive disk after {ARCHIVE_TIMEOUT_S:g} s"
                raise DemoFailed(msg)

            lifecycle = demo.timed("archive (LTS copy, verify)", archive, sample.total_bytes)
            demo.phases[-1].scicat = _archive_status(lifecycle)

            def retrieve() -> None:
                done = _run(
                    [
                        archiver, "retrieve", pid,
                        "--to", str(retrieved_dir),
                        "--stack", str(stack_json),
                        "--poll", "0.5s",
                        "--timeout", "10m",
                    ],
                    capture=False,
                )  # fmt: skip
                if done.returncode != 0:
                    msg = f"archiver retrieve exited {done.returncode}"
                    raise DemoFailed(msg)

            demo.timed("retrieve (job, download, unpack, verify)", retrieve, sample.total_bytes)
            demo.phases[-1].scicat = _retrieve_status(scicat.lifecycle(pid))
        problems = demo.timed(
            "compare byte for byte",
            lambda: compare_trees(sample_dir, retrieved_dir),
            sample.total_bytes,
        )
    except (DemoFailed, StartupError, httpx.HTTPError) as exc:
        _summary(demo, console)
        console.print(f"[bold red]DEMO FAILED[/bold red]: {exc}", highlight=False)
        console.print(f"logs: {stack.logs}")
        return False
    finally:
        stack.stop()
    _summary(demo, console)
    for problem in problems[:20]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    if problems:
        console.print(
            f"[bold red]NOT byte-identical[/bold red]: {len(problems)} difference(s) between"
            f" {sample_dir} and {retrieved_dir}",
            highlight=False,
        )
        return False
    for bulky in (sample_dir, retrieved_dir, stack.lts_root):
        shutil.rmtree(bulky, ignore_errors=True)  # keep logs and state, not 3 copies of data
    console.print(
        f"[bold green]byte-identical[/bold green]: all {sample.files} files"
        f" ({sample.total_bytes / 1024**2:.1f} MiB) came back exactly as they went in",
        highlight=False,
    )
    return True


def _summary(demo: Demo, console: Console) -> None:
    table = Table(title="archiver round trip")
    for column in ("phase", "time", "bytes", "throughput", "SciCat after the step"):
        table.add_column(column, justify="right" if column in ("time", "bytes") else "left")
    for phase in demo.phases:
        size = f"{phase.nbytes / 1024**2:,.1f} MiB" if phase.nbytes else ""
        speed = (
            f"{phase.nbytes / 1024**2 / phase.seconds:,.1f} MiB/s"
            if phase.nbytes and phase.seconds > 0
            else ""
        )
        table.add_row(phase.name, f"{phase.seconds:.1f} s", size, speed, phase.scicat)
    total = sum(p.seconds for p in demo.phases)
    table.add_row("total", f"{total:.1f} s", "", "", "")
    console.print(table)


def main() -> int:
    console = Console()
    return 0 if run_demo(Path("var/demo").resolve(), console) else 1


if __name__ == "__main__":
    sys.exit(main())
