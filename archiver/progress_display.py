"""Rich progress bars for `archiver ingest`: one per file being sent, one for the total."""

import threading
from types import TracebackType

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
        self._progress.console.print(escape(message), highlight=False)
