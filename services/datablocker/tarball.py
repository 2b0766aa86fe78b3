"""Streaming one datablock: S3 objects -> tar -> bounded pipe -> multipart upload, all hashed.

Two threads share the work so hashing overlaps the network: the calling thread
reads each object, hashes it and writes tar records into a bounded pipe; an
uploader thread reads the pipe in part-sized pieces, hashes the tar stream and
uploads the parts. Memory is bounded by the pipe plus the parts in flight; no
byte touches the local disk.
"""

import hashlib
import queue
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from minio import Minio
from minio.error import S3Error

from contracts.events import Datablock, DataFile
from services.datablocker import layout
from services.datablocker.landing import FileMissing, StoredObject
from services.datablocker.planning import LandingFile

_POLL_S = 0.5


class ChecksumMismatch(Exception):
    """A file's bytes do not hash to the checksum the client uploaded (or SciCat registered)."""

    def __init__(
        self, relative_path: str, expected: str, computed: str, against: str = "the uploaded"
    ) -> None:
        super().__init__(
            f"file {relative_path!r}: SHA-256 {computed} does not match {against} {expected}"
        )
        self.relative_path = relative_path


class FileChanged(Exception):
    """An object's size changed between listing and reading."""


@dataclass(frozen=True)
class StreamLimits:
    part_size_bytes: int
    """Multipart part size of the tar upload (S3 minimum 5 MiB)."""
    copy_buffer_bytes: int
    """tarfile's copy buffer and the pipe's chunk size."""
    pipe_chunks: int
    """Chunks the pipe holds before the tar writer waits for the uploader."""
    parallel_part_uploads: int = 2


@dataclass(frozen=True)
class BlockMember:
    landing_file: LandingFile
    member_path: str
    stored: StoredObject
    registered_sha256: str | None = None
    """Hex SHA-256 SciCat's origdatablock holds for the file, compared like the stored one."""


class _Aborted(Exception):
    """The other side of the pipe failed; stop quietly, its error is reported."""


class _Pipe:
    """A bounded byte pipe: `write`/`tell`/`close` for tarfile, `read` for the uploader."""

    def __init__(self, max_chunks: int) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=max_chunks)
        self._written = 0
        self._pending = bytearray()
        self._eof = False
        self.failed = threading.Event()
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    # writer side (tarfile)
    def write(self, data: bytes) -> int:
        chunk = bytes(data)
        self._put(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def close(self) -> None:
        self._put(None)

    def _put(self, item: bytes | None) -> None:
        while True:
            if self.failed.is_set():
                raise _Aborted
            try:
                self._chunks.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return

    # reader side (uploader): whole parts in one read, so minio joins nothing
    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._pending) < size):
            if self.failed.is_set():
                raise _Aborted
            try:
                chunk = self._chunks.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if chunk is None:
                self._eof = True
            else:
                self._pending += chunk
        if size < 0 or size >= len(self._pending):
            data = bytes(self._pending)
            self._pending.clear()
        else:
            with memoryview(self._pending) as view:
                data = bytes(view[:size])
            del self._pending[:size]
        self.sha256.update(data)
        self.bytes_read += len(data)
        return data


class StreamStopped(Exception):
    """`stop` was set: the service is shutting down."""


class _HashingReader:
    """Reads an object's body for tarfile, hashing what passes; stops when asked."""

    def __init__(self, body: object, stop: threading.Event | None) -> None:
        self._body = body
        self._stop = stop
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self._stop is not None and self._stop.is_set():
            raise StreamStopped
        data = self._body.read(size)  # type: ignore[attr-defined]
        self.sha256.update(data)
        return data


def stream_datablock(
    s3: Minio,
    *,
    landing_bucket: str,
    archival_bucket: str,
    archive_id: str,
    members: Sequence[BlockMember],
    limits: StreamLimits,
    on_file: Callable[[DataFile], None] | None = None,
    stop: threading.Event | None = None,
) -> Datablock:
    """Pack `members` into one tar object `archive_id`; every file's checksum checked on the way.

    Raises ChecksumMismatch, FileMissing or FileChanged (user errors) or the S3
    client's errors; in every failure the multipart upload is aborted, so no
    half-written object becomes visible.
    """
    pipe = _Pipe(limits.pipe_chunks)
    upload_error: list[BaseException] = []

    def upload() -> None:
        try:
            s3.put_object(
                archival_bucket,
                archive_id,
                pipe,
                length=-1,
                part_size=limits.part_size_bytes,
                num_parallel_uploads=limits.parallel_part_uploads,
                content_type="application/x-tar",
            )
        except _Aborted:
            pass
        except BaseException as exc:  # handed to the packing thread, re-raised there
            upload_error.append(exc)
            pipe.failed.set()

    uploader = threading.Thread(target=upload, name=f"upload {archive_id}", daemon=True)
    uploader.start()
    files: list[DataFile] = []
    try:
        with tarfile.open(
            fileobj=pipe,  # type: ignore[arg-type]
            mode="w",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            copybufsize=limits.copy_buffer_bytes,
        ) as tar:
            for member in members:
                data_file = _add_member(s3, landing_bucket, tar, member, stop)
                files.append(data_file)
                if on_file:
                    on_file(data_file)
        pipe.close()
    except _Aborted:
        pass
    except BaseException:
        pipe.failed.set()  # put_object sees the read fail and aborts its multipart upload
        uploader.join()
        raise
    uploader.join()
    if upload_error:
        raise upload_error[0]
    return Datablock(
        archive_id=archive_id,
        size=sum(f.size for f in files),
        packed_size=pipe.bytes_read,
        tar_sha256=pipe.sha256.hexdigest(),
        data_file_list=tuple(files),
    )


def _add_member(
    s3: Minio,
    bucket: str,
    tar: tarfile.TarFile,
    member: BlockMember,
    stop: threading.Event | None,
) -> DataFile:
    landing_file, stored = member.landing_file, member.stored
    info = tarfile.TarInfo(layout.member_path(member.member_path))
    info.size = stored.size
    info.mtime = int(stored.mtime.timestamp())
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    try:
        response = s3.get_object(bucket, landing_file.key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            raise FileMissing(landing_file.relative_path) from exc
        raise
    try:
        length = int(response.headers.get("Content-Length", "-1"))
        if length != stored.size:
            msg = (
                f"file {landing_file.relative_path!r} changed while being packed "
                f"({stored.size} bytes listed, {length} served)"
            )
            raise FileChanged(msg)
        reader = _HashingReader(response, stop)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    finally:
        response.close()
        response.release_conn()
    computed = reader.sha256.hexdigest()
    if stored.sha256 is not None and stored.sha256 != computed:
        raise ChecksumMismatch(landing_file.relative_path, stored.sha256, computed)
    if member.registered_sha256 is not None and member.registered_sha256 != computed:
        raise ChecksumMismatch(
            landing_file.relative_path,
            member.registered_sha256,
            computed,
            against="the one registered in SciCat,",
        )
    return DataFile(
        path=info.name,
        size=stored.size,
        time=_aware(stored.mtime),
        chk=computed,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.astimezone()
