"""`archiver ingest` in a terminal: rich progress bars (one per file being sent, one for the
total), the pid on stdout (then, with `--archive`, the archive job's id), the exit code.

The ingest itself is `archiver.ingesting`'s; this module only draws it and runs it.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from archiver.archive_follow import (
    ArchiveResult,
    Clock,
    Outcome,
    find_archive_job,
    follow_archive_job,
)
from archiver.durations import parse_duration
from archiver.ingest_errors import IngestError, IngestInterrupted, UploadCancelled
from archiver.ingesting import (
    Endpoints,
    IngestRequest,
    cancel_on_sigint,
    ingest,
    parse_size,
    resolve_endpoints,
)
from archiver.job_api import JobApi
from archiver.scicat_client import ScicatClient
from runtime.redaction import redact_text

EXIT_FAILED = 1
"""The ingest itself failed (nothing finalized, or a refusal)."""
EXIT_ARCHIVE_FAILED = 3
"""`--wait`: the archive job ended finishedUnsuccessful / finishedWithDatasetErrors, or packing
failed (missingFilesError) so no job will come."""
EXIT_TIMEOUT = 124
"""`--wait` (or `--archive` looking for its job): the timeout passed first; the job goes on."""
EXIT_CANCELLED = 130
JOB_LOOKUP_S = 120.0
"""`--archive` without `--wait`: how long to wait for the archive job to be created."""


class RichIngestProgress:
    """An `IngestProgress` drawn with rich (safe to call from worker threads)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._lock = threading.Lock()
        self._files: dict[str, TaskID] = {}
        self._hashing: TaskID | None = None
        self._total: TaskID | None = None

    def __enter__(self) -> "RichIngestProgress":
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._progress.stop()

    # --- IngestProgress -----------------------------------------------------------
    def hashing_started(self, total_bytes: int) -> None:
        self._hashing = self._progress.add_task("hashing (SHA-256)", total=total_bytes)

    def hashed(self, nbytes: int) -> None:
        if self._hashing is not None:
            self._progress.advance(self._hashing, nbytes)

    def upload_started(self, total_bytes: int) -> None:
        self._total = self._progress.add_task("uploading", total=total_bytes)

    def file_started(self, name: str, size: int) -> None:
        task = self._progress.add_task(f"  {name}", total=size)
        with self._lock:
            self._files[name] = task

    def advanced(self, name: str, nbytes: int) -> None:
        with self._lock:
            task = self._files.get(name)
        if task is not None:
            self._progress.advance(task, nbytes)
        if self._total is not None:
            self._progress.advance(self._total, nbytes)

    def file_finished(self, name: str) -> None:
        with self._lock:
            task = self._files.pop(name, None)
        if task is not None:
            self._progress.remove_task(task)

    def note(self, message: str) -> None:
        self._progress.console.print(escape(redact_text(message)), highlight=False)


@dataclass(frozen=True)
class ArchiveWait:
    """`--archive`: find the job (at most JOB_LOOKUP_S); with `follow`, follow it to its end."""

    follow: bool
    timeout_s: float


def run_ingest(
    request: IngestRequest,
    endpoints: Endpoints,
    *,
    archive_wait: ArchiveWait | None = None,
    timeout_s: float = 60.0,
) -> int:
    """The command: progress bars on stderr, the pid (and job id) on stdout; the exit code."""
    errors = Console(stderr=True)
    out = Console()
    cancel = threading.Event()
    connections = max(8, 2 * request.parallel + 2)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    with httpx.Client(timeout=timeout_s, limits=limits) as http:
        with RichIngestProgress(errors) as progress, cancel_on_sigint(cancel):
            try:
                pid = ingest(request, endpoints, http=http, progress=progress, cancel=cancel)
            except IngestInterrupted as interrupted:
                progress.stop()
                _left_behind(errors, interrupted.pid, request, endpoints)
                return EXIT_CANCELLED
            except (UploadCancelled, KeyboardInterrupt):
                progress.stop()
                errors.print("[red]cancelled[/red]: nothing was registered in SciCat")
                return EXIT_CANCELLED
            except (IngestError, httpx.HTTPError) as exc:
                progress.stop()
                reason = escape(redact_text(_reason(exc)))
                errors.print(f"[red]ingest failed[/red]: {reason}", highlight=False)
                return EXIT_FAILED
        out.print(pid, markup=False, highlight=False, soft_wrap=True)
        if not request.archive or archive_wait is None:
            return 0
        try:
            return _archive(http, endpoints, pid, archive_wait, out, errors)
        except KeyboardInterrupt:
            errors.print(f"stopped waiting; the archiving of {pid} goes on", highlight=False)
            return EXIT_CANCELLED
        except (IngestError, httpx.HTTPError) as exc:
            reason = escape(redact_text(_reason(exc)))
            errors.print(f"[red]could not follow the archive job[/red]: {reason}")
            return EXIT_FAILED


def _archive(
    http: httpx.Client,
    endpoints: Endpoints,
    pid: str,
    wait: ArchiveWait,
    out: Console,
    errors: Console,
) -> int:
    """Print the archive job's id; with `--wait`, follow it with a bar; the exit code."""
    scicat = ScicatClient(http, endpoints.scicat_url)
    login = scicat.sign_in(endpoints.credentials)
    clock = Clock(wait.timeout_s if wait.follow else min(wait.timeout_s, JOB_LOOKUP_S))
    with ArchiveBar(errors) as bar:
        bar.job_changed(
            "waiting for the archive job (created once the dataset is packed)", None, ""
        )
        found = find_archive_job(scicat, pid, clock)
        if isinstance(found, str):
            out.print(found, markup=False, highlight=False, soft_wrap=True)
            if not wait.follow:
                return 0
            bar.job_found(found)
            job_api = JobApi(http, endpoints.gateway_url, login.token)
            result = follow_archive_job(scicat, job_api, found, pid, bar, clock)
        else:
            result = found
    return _report(errors, pid, result, following=wait.follow)


def _report(errors: Console, pid: str, result: ArchiveResult, *, following: bool) -> int:
    message = escape(redact_text(result.message))
    if result.outcome is Outcome.succeeded:
        errors.print(f"[green]archived[/green]: {pid} ({result.status})", highlight=False)
        return 0
    if result.outcome is Outcome.failed:
        what = f"archive job {result.job_id}" if result.job_id else f"archiving {pid}"
        errors.print(f"[red]{what} failed[/red]: {result.status}: {message}", highlight=False)
        return EXIT_ARCHIVE_FAILED
    if not following:
        errors.print(
            f"{message}; find it later with `archiver jobs --type archive`", highlight=False
        )
        return 0
    errors.print(f"[yellow]timed out[/yellow]: {message}", highlight=False)
    return EXIT_TIMEOUT


class ArchiveBar:
    """An `ArchiveProgress` drawn as one rich bar by percent verified, with the job's step."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[step]}", markup=False),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("archive", total=100.0, step="")
        self._console = console

    def __enter__(self) -> "ArchiveBar":
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def job_found(self, job_id: str) -> None:
        self._progress.update(self._task, description=f"archive job {job_id}")

    def job_changed(self, status: str, percent: float | None, detail: str) -> None:
        step = redact_text(f"{status}: {detail}" if detail else status)
        if percent is None:
            self._progress.update(self._task, step=step)
        else:
            self._progress.update(self._task, completed=percent, step=step)


def _left_behind(errors: Console, pid: str, request: IngestRequest, endpoints: Endpoints) -> None:
    """Which SciCat dataset an interrupted ingest left, and how to resume or remove it."""
    url = f"{endpoints.scicat_url.rstrip('/')}/v3/Datasets/{quote(pid, safe='')}"
    errors.print(
        f"[red]interrupted[/red]: SciCat dataset {escape(pid)} was left behind (registered,"
        " not finalized; the gateway removed what was uploaded).\n"
        f"  resume it: archiver ingest {escape(str(request.folder))} --owner-group"
        f" {escape(request.owner_group)} --resume {escape(pid)} (same login options)\n"
        "  or remove it: ask a SciCat admin (a member of SciCat's DELETE_GROUPS) to delete"
        f" it: DELETE {escape(url)}",
        highlight=False,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPError):
        where = exc.request.url.copy_with(query=None) if _has_request(exc) else "a service"
        return f"no answer from {where} ({type(exc).__name__}: {exc})"
    return str(exc)


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when unset
    except RuntimeError:
        return False
    return True


def parse_timeout(text: str) -> float:
    """`--timeout`: seconds (`600`), or `90s`, `30m`, `2h`."""
    if text.strip().replace(".", "", 1).isdigit():
        return float(text)
    return parse_duration(text).total_seconds()


def ingest_command(
    folder: Path,
    *,
    owner_group: str,
    stack: Path | None,
    scicat_url: str | None,
    gateway_url: str | None,
    username: str | None,
    password: str | None,
    token: str | None,
    ask_password: Callable[[str], str] | None,
    archive: bool,
    wait: bool,
    timeout: str,
    resume: str | None,
    chunk_size: str,
    parallel: int,
    name: str | None,
    contact_email: str | None,
) -> int:
    """`archiver ingest`'s options -> an ingest; the exit code."""
    errors = Console(stderr=True)
    try:
        if wait and not archive:
            raise IngestError("--wait follows the archive job: add --archive")
        endpoints = resolve_endpoints(
            stack, scicat_url, gateway_url, username, password, token, ask_password
        )
        request = IngestRequest(
            folder=folder,
            owner_group=owner_group,
            archive=archive,
            chunk_size=parse_size(chunk_size),
            parallel=parallel,
            name=name,
            contact_email=contact_email,
            resume_pid=resume,
        )
        archive_wait = ArchiveWait(follow=wait, timeout_s=parse_timeout(timeout))
    except (IngestError, ValueError) as exc:
        reason = escape(redact_text(str(exc)))
        errors.print(f"[red]ingest failed[/red]: {reason}", highlight=False)
        return EXIT_FAILED
    return run_ingest(request, endpoints, archive_wait=archive_wait)
