"""`archiver retrieve` in a terminal: the job's step, a bar per download, the summary table.

The retrieve itself is `archiver.retrieving`'s; this module only draws it and runs it.
"""

from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from archiver.durations import parse_duration
from archiver.ingest_errors import IngestError
from archiver.retrieving import (
    RetrieveEndpoints,
    RetrieveError,
    RetrieveReport,
    RetrieveRequest,
    endpoints_from_options,
    retrieve,
)
from runtime.redaction import redact_text

EXIT_FAILED = 1


class RichRetrieveProgress:
    """A `RetrieveProgress` drawn with rich."""

    def __init__(self, console: Console) -> None:
        self._job_line = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False), console=console
        )
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._console = console
        self._job: TaskID | None = None
        self._last_job_line = ""
        self._files: dict[str, TaskID] = {}
        self._verify: TaskID | None = None
        self._live_bars = False

    def __enter__(self) -> "RichRetrieveProgress":
        self._job_line.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._job_line.stop()
        self._progress.stop()

    def _bars(self) -> None:
        if not self._live_bars:
            self._job_line.stop()
            self._progress.start()
            self._live_bars = True

    # --- RetrieveProgress ---------------------------------------------------------
    def job_changed(self, status: str, detail: str) -> None:
        line = redact_text(f"job {status}: {detail}" if detail else f"job {status}")
        if self._job is None:
            self._job = self._job_line.add_task(line, total=None)
        else:
            self._job_line.update(self._job, description=line)
        if line != self._last_job_line:
            self._last_job_line = line
            self._job_line.console.print(escape(line), highlight=False)

    def download_started(self, name: str, size: int) -> None:
        self._bars()
        self._files[name] = self._progress.add_task(f"download {name}", total=size)

    def downloaded(self, name: str, nbytes: int) -> None:
        task = self._files.get(name)
        if task is not None:
            self._progress.advance(task, nbytes)

    def download_finished(self, name: str) -> None:
        self._files.pop(name, None)

    def verify_started(self, total_bytes: int) -> None:
        self._bars()
        self._verify = self._progress.add_task("verify SHA-256", total=total_bytes)

    def verified(self, nbytes: int) -> None:
        if self._verify is not None:
            self._progress.advance(self._verify, nbytes)

    def note(self, message: str) -> None:
        self._console.print(escape(redact_text(message)), highlight=False)


def _size(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB"


def render_report(console: Console, report: RetrieveReport, target: Path) -> None:
    """The summary table, each problem, and a last line saying whether all is intact."""
    table = Table(title=f"Retrieved {report.pid}")
    table.add_column("")
    table.add_column("", overflow="fold")
    check = report.check
    table.add_row("SciCat job", redact_text(f"{report.job_id}: {report.status_message}"))
    table.add_row("datablocks", f"{report.datablocks} ({_size(report.packed_bytes)} packed)")
    table.add_row("downloaded now", _size(report.downloaded_bytes))
    table.add_row("files verified", f"{len(check.verified)} ({_size(check.bytes_verified)})")
    for phase, seconds in report.phases.items():
        table.add_row(f"{phase} time", f"{seconds:.1f} s")
    table.add_row("target", str(target))
    console.print(table)
    for problem in report.problems():
        console.print(f"[red]FAILED[/red]: {escape(redact_text(problem))}", highlight=False)
    if report.ok:
        console.print(
            f"[green]all {len(check.verified)} file(s) intact[/green] (SHA-256 as recorded in"
            " SciCat)",
            highlight=False,
        )
    else:
        console.print(f"[red]{len(report.problems())} problem(s)[/red]", highlight=False)


def run_retrieve(request: RetrieveRequest, endpoints: RetrieveEndpoints) -> int:
    """Progress on stderr, the summary on stdout; the exit code."""
    errors = Console(stderr=True)
    with httpx.Client(timeout=60.0) as http, RichRetrieveProgress(errors) as progress:
        try:
            report = retrieve(request, endpoints, http=http, progress=progress)
        except (RetrieveError, IngestError, httpx.HTTPError) as exc:
            progress.stop()
            reason = escape(redact_text(str(exc)))
            errors.print(f"[red]retrieve failed[/red]: {reason}", highlight=False)
            return EXIT_FAILED
    render_report(Console(), report, request.target)
    return 0 if report.ok else EXIT_FAILED


def retrieve_command(
    pid: str,
    *,
    to: Path,
    stack: Path | None,
    scicat_url: str | None,
    gateway_url: str | None,
    username: str | None,
    password: str | None,
    token: str | None,
    ask_password: Callable[[str], str] | None,
    owner_group: str | None,
    timeout: str,
    poll: str,
) -> int:
    """`archiver retrieve`'s options -> a retrieve; the exit code."""
    try:
        endpoints = endpoints_from_options(
            stack, scicat_url, gateway_url, username, password, token, ask_password
        )
        request = RetrieveRequest(
            pid=pid,
            target=to.resolve(),
            owner_group=owner_group,
            timeout_s=parse_duration(timeout).total_seconds(),
            poll_s=parse_duration(poll).total_seconds(),
        )
    except (RetrieveError, ValueError) as exc:
        message = f"[red]retrieve failed[/red]: {escape(redact_text(str(exc)))}"
        Console(stderr=True).print(message, highlight=False)
        return EXIT_FAILED
    return run_retrieve(request, endpoints)
