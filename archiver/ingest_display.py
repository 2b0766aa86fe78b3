"""`archiver ingest` in a terminal: rich progress bars (one per file being sent, one for the
total), the pid on stdout, the exit code.

The ingest itself is `archiver.ingesting`'s; this module only draws it and runs it.
"""

import threading
from pathlib import Path
from types import TracebackType

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

from archiver.ingest_errors import IngestError, UploadCancelled
from archiver.ingesting import (
    Endpoints,
    IngestRequest,
    cancel_on_sigint,
    ingest,
    parse_size,
    resolve_endpoints,
)
from runtime.redaction import redact_text

EXIT_FAILED = 1
EXIT_CANCELLED = 130


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


def run_ingest(request: IngestRequest, endpoints: Endpoints, *, timeout_s: float = 60.0) -> int:
    """The command: progress bars on stderr, the pid on stdout; the exit code."""
    errors = Console(stderr=True)
    cancel = threading.Event()
    connections = max(8, 2 * request.parallel + 2)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    with (
        httpx.Client(timeout=timeout_s, limits=limits) as http,
        RichIngestProgress(errors) as progress,
        cancel_on_sigint(cancel),
    ):
        try:
            pid = ingest(request, endpoints, http=http, progress=progress, cancel=cancel)
        except UploadCancelled:
            progress.stop()
            errors.print("[red]cancelled[/red]: nothing was finalized", highlight=False)
            return EXIT_CANCELLED
        except (IngestError, httpx.HTTPError) as exc:
            progress.stop()
            reason = escape(redact_text(_reason(exc)))
            errors.print(f"[red]ingest failed[/red]: {reason}", highlight=False)
            return EXIT_FAILED
    Console().print(pid, markup=False, highlight=False, soft_wrap=True)
    return 0


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


def ingest_command(
    folder: Path,
    *,
    owner_group: str,
    stack: Path | None,
    scicat_url: str | None,
    gateway_url: str | None,
    username: str | None,
    password: str | None,
    archive: bool,
    chunk_size: str,
    parallel: int,
    name: str | None,
    contact_email: str | None,
) -> int:
    """`archiver ingest`'s options -> an ingest; the exit code."""
    errors = Console(stderr=True)
    try:
        endpoints = resolve_endpoints(stack, scicat_url, gateway_url, username, password)
        request = IngestRequest(
            folder=folder,
            owner_group=owner_group,
            archive=archive,
            chunk_size=parse_size(chunk_size),
            parallel=parallel,
            name=name,
            contact_email=contact_email,
        )
    except (IngestError, ValueError) as exc:
        reason = escape(redact_text(str(exc)))
        errors.print(f"[red]ingest failed[/red]: {reason}", highlight=False)
        return EXIT_FAILED
    return run_ingest(request, endpoints)
