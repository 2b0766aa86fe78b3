"""Long-term storage backends: a POSIX share in front of tape, or a cold S3 bucket.

Both store a datablock under its `archive_id` (a relative path below the LTS
root, or the object key). The API is synchronous and streams in bounded chunks:
callers run it in a worker thread (`asyncio.to_thread`).

A copy that exists but cannot be read yet is reported as `LtsNotReadable`:
on tape, a read that fails (EAGAIN, EBUSY, ETIMEDOUT, ...) while the file is
being recalled; in a cold bucket, an object whose restore has not finished.
`prepare_read` starts the recall or restore; callers poll it with a bounded wait.

A posix write goes to one temp file per archive id (`.<name>.part`), held under
an exclusive lock while it is written, then renamed. A writer that died leaves
that file behind, unlocked: the next writer of the same archive id takes it
over and truncates it, so nothing accumulates and a partial file is never read
as a copy. A live writer's lock makes a second writer fail with `LtsBusy`.

A copy is never removed to make room for a new one: a re-copy is written
beside it (`copy_id`: `.recopy-<job>-<n>/<name>` in the same folder, staged)
and `promote` puts it in the copy's place only after it verified. The
datablocker gets a backend that only reads (`create_lts(..., read_only=True)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import glob
import hashlib
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Protocol

from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.error import S3Error

from contracts.objectkeys import UnsafeName, check_relative_path
from runtime import metrics
from runtime.s3_extras import restore_object, s3_extras_client
from runtime.settings import LtsSettings, S3Settings

if TYPE_CHECKING:
    from botocore.client import BaseClient

CHUNK_BYTES = 8 * 1024**2
S3_PART_BYTES = 16 * 1024**2

# Errors a hierarchical storage manager gives while a file is on tape, not on disk.
_RECALL_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY, errno.ETIMEDOUT, errno.EINPROGRESS}
    | {getattr(errno, "ENOMEDIUM", errno.EAGAIN), getattr(errno, "ENODATA", errno.EAGAIN)}
)


class LtsError(Exception):
    """Base of the LTS backends' errors."""


class LtsPathError(LtsError, ValueError):
    """An archive id that could leave the LTS root: unsafe as a relative path, or a symlink out."""


class LtsNotFound(LtsError):
    """There is no copy under this archive id."""


class LtsNotReadable(LtsError):
    """The copy exists but cannot be read yet (tape recall, cold restore pending)."""


class LtsWriteError(LtsError):
    """The source ended before (or after) the expected number of bytes; nothing was kept."""


class LtsBusy(LtsError):
    """Another writer is copying this archive id right now; try again later."""


class LtsReadOnly(LtsError):
    """This process may only read LTS (the datablocker checks copies, it never writes them)."""


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class LtsBackend(Protocol):
    kind: str

    def location(self, archive_id: str) -> str:
        """Where the copy of `archive_id` lives, for people and events."""
        ...

    def write(self, archive_id: str, source: Readable, size: int, *, staged: bool = False) -> None:
        """Store exactly `size` bytes read from `source`, atomically: all or nothing.

        `staged`: a re-copy beside the copy (`copy_id`), to be verified and promoted;
        it is kept readable at once (s3: the standard storage class).
        """
        ...

    def promote(self, staged_id: str, archive_id: str, size: int) -> None:
        """Put the verified staged copy in the place of `archive_id`'s copy, atomically.

        `LtsNotFound` if the staged copy is not there (nothing changed), `LtsWriteError`
        if it is not `size` bytes (nothing changed).
        """
        ...

    def open_read(self, archive_id: str) -> contextlib.AbstractContextManager[Readable]:
        """A stream of the copy; `LtsNotFound` or `LtsNotReadable` if it cannot be read now."""
        ...

    def prepare_read(self, archive_id: str) -> None:
        """Start a recall or restore if needed; `LtsNotReadable` while it is not done."""
        ...

    def size(self, archive_id: str) -> int | None:
        """The copy's size without reading it (no recall), or None if there is none."""
        ...

    def delete(self, archive_id: str) -> None:
        """Remove the copy; an absent copy is fine."""
        ...

    def free_fraction(self) -> float | None:
        """Free share of the storage (0..1), or None where space is not ours to watch."""
        ...


def checked_archive_id(archive_id: str) -> PurePosixPath:
    """The archive id as a relative path, refusing anything that could leave the root."""
    try:
        return PurePosixPath(check_relative_path(archive_id, "archive id"))
    except UnsafeName as exc:
        raise LtsPathError(str(exc)) from exc


def is_recall_error(exc: OSError) -> bool:
    """Whether an OSError means 'on tape, try again later' rather than a broken copy."""
    return isinstance(exc, BlockingIOError | TimeoutError) or exc.errno in _RECALL_ERRNOS


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


def _statvfs_free_fraction(root: Path) -> float:
    stats = os.statvfs(root)
    return stats.f_bavail / stats.f_blocks if stats.f_blocks else 0.0


RECOPY_PREFIX = ".recopy-"
"""Folder of a re-copy beside a datablock's copy: `.recopy-<job hash>-<attempt>/<name>`."""


def copy_id(archive_id: str, job_id: str, attempt: int) -> str:
    """Where copy attempt `attempt` of job `job_id` is written and verified.

    The first attempt is the archive id itself; a re-copy (attempt 1, 2, ...) lies
    beside it, in a folder of its own (the file name stays as long as the copy's),
    and replaces the copy only once it verified (`LtsBackend.promote`).
    """
    if attempt == 0:
        return archive_id
    path = checked_archive_id(archive_id)
    job = hashlib.sha256(job_id.encode()).hexdigest()[:12]
    return str(path.parent / f"{RECOPY_PREFIX}{job}-{attempt}" / path.name)


TEMP_TAKEOVER_TRIES = 3
_LEGACY_TEMP = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{32}\.part")
"""Temp files of earlier versions (`.<name>.<uuid4 hex>.part`), one per write, never reused."""


def temp_path_of(path: Path) -> Path:
    """The one temp file a copy at `path` is written to before it is renamed into place."""
    return path.with_name(f".{path.name}.part")


class PosixLts:
    """An LTS share mounted as a directory (NFS in front of tape)."""

    kind = "posix"

    def __init__(
        self,
        root: Path,
        *,
        opener: Callable[[Path], BinaryIO] = _open_binary,
        free_fraction_reader: Callable[[], float] | None = None,
    ) -> None:
        self.root = root.resolve()
        self._opener = opener
        self._free_fraction_reader = free_fraction_reader or (
            lambda: _statvfs_free_fraction(self.root)
        )
        # flock keeps other processes out; threads of this one are kept out here, since
        # on NFS Linux emulates flock with per-process POSIX locks.
        self._writing: set[Path] = set()
        self._writing_guard = threading.Lock()

    def path_of(self, archive_id: str) -> Path:
        path = (self.root / checked_archive_id(archive_id)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            msg = f"archive id {archive_id!r} resolves outside the LTS root"
            raise LtsPathError(msg)
        return path

    def location(self, archive_id: str) -> str:
        return str(self.path_of(archive_id))

    def write(self, archive_id: str, source: Readable, size: int, *, staged: bool = False) -> None:
        path = self.path_of(archive_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._writing_guard:
            if path in self._writing:
                msg = f"{archive_id}: another writer is copying it now"
                raise LtsBusy(msg)
            self._writing.add(path)
        try:
            self._write_locked(archive_id, path, source, size)
        finally:
            with self._writing_guard:
                self._writing.discard(path)

    def _write_locked(self, archive_id: str, path: Path, source: Readable, size: int) -> None:
        temp = temp_path_of(path)
        fd = _claim_temp(temp, archive_id)
        # The lock lives as long as the descriptor: it is closed only after the rename.
        with os.fdopen(fd, "wb", closefd=True) as out:
            try:
                _remove_legacy_temps(path)
                written = 0
                while chunk := source.read(CHUNK_BYTES):
                    written += len(chunk)
                    if written > size:
                        break
                    out.write(chunk)
                if written != size:
                    msg = f"{archive_id}: expected {size} bytes from the source, got {written}"
                    raise LtsWriteError(msg)
                out.flush()
                os.fsync(out.fileno())
                os.replace(temp, path)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        _fsync_dir(path.parent)

    @contextlib.contextmanager
    def open_read(self, archive_id: str) -> Iterator[Readable]:
        path = self.path_of(archive_id)
        try:
            handle = self._opener(path)
        except FileNotFoundError as exc:
            msg = f"{archive_id}: no copy at {path}"
            raise LtsNotFound(msg) from exc
        except OSError as exc:
            if is_recall_error(exc):
                msg = f"{archive_id}: not readable yet ({exc})"
                raise LtsNotReadable(msg) from exc
            raise
        with handle:
            yield handle

    def prepare_read(self, archive_id: str) -> None:
        # Reading the first byte is what makes a hierarchical storage manager recall a file.
        with self.open_read(archive_id) as handle:
            try:
                handle.read(1)
            except OSError as exc:
                if is_recall_error(exc):
                    msg = f"{archive_id}: not readable yet ({exc})"
                    raise LtsNotReadable(msg) from exc
                raise

    def size(self, archive_id: str) -> int | None:
        try:
            return self.path_of(archive_id).stat().st_size
        except FileNotFoundError:
            return None

    def promote(self, staged_id: str, archive_id: str, size: int) -> None:
        staged, path = self.path_of(staged_id), self.path_of(archive_id)
        try:
            found = staged.stat().st_size
        except FileNotFoundError as exc:
            msg = f"{archive_id}: no staged copy at {staged}"
            raise LtsNotFound(msg) from exc
        if found != size:
            msg = f"{archive_id}: the staged copy holds {found} bytes, not the recorded {size}"
            raise LtsWriteError(msg)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, path)
        _fsync_dir(path.parent)
        _remove_recopy_folder(staged.parent)

    def delete(self, archive_id: str) -> None:
        path = self.path_of(archive_id)
        path.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            _fsync_dir(path.parent)
        _remove_recopy_folder(path.parent)

    def free_fraction(self) -> float | None:
        return self._free_fraction_reader()


def _remove_recopy_folder(folder: Path) -> None:
    """Remove a re-copy's own folder once it is empty (a writer's temp file keeps it)."""
    if folder.name.startswith(RECOPY_PREFIX):
        with contextlib.suppress(FileNotFoundError, OSError):
            folder.rmdir()


def _claim_temp(temp: Path, archive_id: str) -> int:
    """A descriptor of `temp`, created or taken over from a dead writer, locked and empty.

    A live writer holds its lock until it has renamed the file into place; a dead
    writer's lock went with its process. After locking, the name must still point at
    the locked file: otherwise the previous holder renamed or removed it, and the
    lock is on a published copy (or nothing), so the name is opened again.
    """
    for _ in range(TEMP_TAKEOVER_TRIES):
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            msg = f"{archive_id}: another writer is copying it now ({temp.name} is locked)"
            raise LtsBusy(msg) from exc
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(temp, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            os.ftruncate(fd, 0)  # a dead writer's bytes never become part of a copy
            return fd
        os.close(fd)
    msg = f"{archive_id}: {temp.name} kept changing under other writers"
    raise LtsBusy(msg)


def _remove_legacy_temps(path: Path) -> None:
    """Remove what writers of earlier versions, killed mid-copy, left beside `path`."""
    for sibling in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        match = _LEGACY_TEMP.fullmatch(sibling.name)
        if match and match["name"] == path.name:
            sibling.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RESTORE_DAYS = 7
"""Days a restored copy stays readable before S3 keeps only its archived one again."""


class _ObjectStream:
    """A GET response read in chunks, its connection released on close."""

    def __init__(self, response: object) -> None:
        self._response = response

    def read(self, size: int = -1, /) -> bytes:
        return self._response.read(None if size < 0 else size)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._response.close()  # type: ignore[attr-defined]
        self._response.release_conn()  # type: ignore[attr-defined]


class S3ColdLts:
    """An LTS bucket whose objects are written with a cold storage class (e.g. GLACIER)."""

    kind = "s3"

    def __init__(
        self, client: Minio, extras: BaseClient, bucket: str, storage_class: str = "GLACIER"
    ) -> None:
        self.client = client
        self.extras = extras
        self.bucket = bucket
        self.storage_class = storage_class

    def location(self, archive_id: str) -> str:
        return f"s3://{self.bucket}/{checked_archive_id(archive_id)}"

    def write(self, archive_id: str, source: Readable, size: int, *, staged: bool = False) -> None:
        key = str(checked_archive_id(archive_id))
        counted = CountingReader(source)
        # A staged re-copy stays readable: it is verified, then copied into place cold.
        storage_class = "STANDARD" if staged else self.storage_class
        # A multipart upload becomes visible only when completed: all or nothing.
        try:
            self.client.put_object(
                self.bucket,
                key,
                counted,  # type: ignore[arg-type]
                length=size,
                part_size=S3_PART_BYTES,
                num_parallel_uploads=1,
                metadata={"x-amz-storage-class": storage_class},
            )
        except OSError as exc:  # minio-py: "stream having not enough data"
            if counted.count >= size:
                raise
            msg = f"{archive_id}: expected {size} bytes from the source, got {counted.count}"
            raise LtsWriteError(msg) from exc
        if counted.count != size or counted.read(1):
            self.client.remove_object(self.bucket, key)
            msg = f"{archive_id}: the source does not hold the expected {size} bytes"
            raise LtsWriteError(msg)

    @contextlib.contextmanager
    def open_read(self, archive_id: str) -> Iterator[Readable]:
        key = str(checked_archive_id(archive_id))
        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as exc:
            raise _mapped(archive_id, exc) from exc
        stream = _ObjectStream(response)
        try:
            yield stream
        finally:
            stream.close()

    def prepare_read(self, archive_id: str) -> None:
        key = str(checked_archive_id(archive_id))
        try:
            response = self.client.get_object(self.bucket, key, offset=0, length=1)
        except S3Error as exc:
            if exc.code != "InvalidObjectState":
                raise _mapped(archive_id, exc) from exc
            restore_object(self.extras, self.bucket, key, _RESTORE_DAYS)
            msg = f"{archive_id}: restore from {self.storage_class} requested, not done yet"
            raise LtsNotReadable(msg) from exc
        response.close()
        response.release_conn()

    def size(self, archive_id: str) -> int | None:
        try:
            stat = self.client.stat_object(self.bucket, str(checked_archive_id(archive_id)))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return None
            raise
        return stat.size

    def promote(self, staged_id: str, archive_id: str, size: int) -> None:
        staged_key, key = str(checked_archive_id(staged_id)), str(checked_archive_id(archive_id))
        found = self.size(staged_id)
        if found is None:
            msg = f"{archive_id}: no staged copy at {staged_key}"
            raise LtsNotFound(msg)
        if found != size:
            msg = f"{archive_id}: the staged copy holds {found} bytes, not the recorded {size}"
            raise LtsWriteError(msg)
        # A server-side copy (multipart above 5 GiB) replaces the object in one step; the
        # staged copy goes only once the copy in place has the recorded size.
        self.client.copy_object(
            self.bucket,
            key,
            CopySource(self.bucket, staged_key),
            metadata={"x-amz-storage-class": self.storage_class},
            metadata_directive=REPLACE,
        )
        placed = self.size(archive_id)
        if placed != size:
            msg = f"{archive_id}: the copy put in place holds {placed} bytes, not {size}"
            raise LtsWriteError(msg)
        self.client.remove_object(self.bucket, staged_key)

    def delete(self, archive_id: str) -> None:
        self.client.remove_object(self.bucket, str(checked_archive_id(archive_id)))

    def free_fraction(self) -> float | None:
        return None


class ReadOnlyLts:
    """A backend that reads and measures copies; writing, promoting or deleting raises."""

    def __init__(self, backend: LtsBackend) -> None:
        self._backend = backend
        self.kind = backend.kind

    def location(self, archive_id: str) -> str:
        return self._backend.location(archive_id)

    def open_read(self, archive_id: str) -> contextlib.AbstractContextManager[Readable]:
        return self._backend.open_read(archive_id)

    def prepare_read(self, archive_id: str) -> None:
        self._backend.prepare_read(archive_id)

    def size(self, archive_id: str) -> int | None:
        return self._backend.size(archive_id)

    def free_fraction(self) -> float | None:
        return self._backend.free_fraction()

    def write(self, archive_id: str, source: Readable, size: int, *, staged: bool = False) -> None:
        raise self._refused("write", archive_id)

    def promote(self, staged_id: str, archive_id: str, size: int) -> None:
        raise self._refused("replace", archive_id)

    def delete(self, archive_id: str) -> None:
        raise self._refused("delete", archive_id)

    @staticmethod
    def _refused(action: str, archive_id: str) -> LtsReadOnly:
        return LtsReadOnly(f"{archive_id}: this process may read LTS but not {action} copies")


class CountingReader:
    """Counts the bytes pulled through it (to tell a short source from a long one)."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._source.read(size)
        self.count += len(chunk)
        return chunk


def _mapped(archive_id: str, exc: S3Error) -> Exception:
    if exc.code == "InvalidObjectState":
        return LtsNotReadable(f"{archive_id}: in cold storage, not restored yet")
    if exc.code in ("NoSuchKey", "NoSuchObject"):
        return LtsNotFound(f"{archive_id}: no copy in the LTS bucket")
    return exc


def create_lts(
    settings: LtsSettings,
    s3: Minio | None,
    s3_settings: S3Settings | None = None,
    *,
    read_only: bool = False,
) -> LtsBackend:
    """The backend the settings name; the s3 one also builds its client for restores.

    `read_only`: a backend that refuses to write, promote or delete (`ReadOnlyLts`).
    """
    backend: LtsBackend
    if settings.backend == "posix":
        if settings.root is None:
            msg = "LTS_ROOT must be set for the posix LTS backend"
            raise ValueError(msg)
        backend = PosixLts(settings.root)
    elif s3 is None or s3_settings is None:
        msg = "the s3 LTS backend needs an S3 client and the S3 settings"
        raise ValueError(msg)
    else:
        extras = s3_extras_client(s3_settings)
        backend = S3ColdLts(s3, extras, settings.bucket, settings.storage_class)
    return ReadOnlyLts(backend) if read_only else backend


class LtsRecallTimeout(LtsError):
    """The copy stayed unreadable (on tape, not restored) for the whole bounded wait."""


async def await_readable(
    lts: LtsBackend,
    archive_id: str,
    *,
    poll_s: float,
    timeout_s: float,
    on_waiting: Callable[[float, str], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Start a recall or restore and wait, bounded, until the copy can be read.

    `on_waiting(waited_s, why)` is awaited after every failed probe, so a caller
    can show the wait. A probe that blocks (a tape recall behind a plain read)
    counts against the same deadline; `LtsNotFound` passes through; past
    `timeout_s` it raises `LtsRecallTimeout`. A wait (one failed probe or more)
    is observed in `archiver_storage_wait_seconds{storage="lts"}`.
    """
    started = clock()
    deadline = started + timeout_s
    waited = False
    while True:
        remaining = max(deadline - clock(), 0.001)
        try:
            await asyncio.wait_for(asyncio.to_thread(lts.prepare_read, archive_id), remaining)
            if waited:
                metrics.observe_storage_wait("lts", clock() - started, ready=True)
            return
        except LtsNotReadable as exc:
            last = str(exc)
        except TimeoutError:
            last = "reading blocked"
        if clock() + poll_s > deadline:
            metrics.observe_storage_wait("lts", clock() - started, ready=False)
            msg = f"{archive_id} was not readable within {timeout_s:g} s: {last}"
            raise LtsRecallTimeout(msg)
        waited = True
        if on_waiting is not None:
            await on_waiting(clock() - started, last)
        await asyncio.sleep(poll_s)
