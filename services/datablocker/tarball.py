"""Streaming one datablock: S3 objects -> tar -> bounded pipe -> multipart upload, all hashed.

Threads share the work so hashing overlaps the network: the calling thread
reads each object, hashes it and writes tar records into a bounded pipe; an
uploader thread reads the pipe in part-sized pieces, hashes the tar stream and
uploads the parts. Small objects are fetched (and hashed) ahead by a small
pool, so the tar writer does not wait a GET round trip per small file. Memory
is bounded by the pipe, the parts in flight and the prefetch budget; no byte
touches the local disk.
"""

import hashlib
import io
import queue
import tarfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from minio import Minio
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

from contracts.events import Datablock, DataFile
from contracts.objectkeys import check_relative_path
from services.datablocker.landing_objects import (
    CHECKSUM_MODE,
    FileMissing,
    StoredObject,
    stored_object,
)
from services.datablocker.planning import LandingFile

_POLL_S = 0.5
_MAX_AHEAD = 256
"""Prefetched members waiting at most (bounds the futures held for many empty files)."""


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


class NotRestored(Exception):
    """A GET found a cold object whose restore has not finished; nothing of the block is kept."""

    def __init__(self, landing_file: LandingFile) -> None:
        name = landing_file.relative_path
        super().__init__(f"file {name!r} is not restored from cold storage yet")
        self.landing_file = landing_file


@dataclass(frozen=True)
class StreamLimits:
    part_size_bytes: int
    """Multipart part size of the tar upload (S3 minimum 5 MiB)."""
    copy_buffer_bytes: int
    """tarfile's copy buffer and the pipe's chunk size."""
    pipe_chunks: int
    """Chunks the pipe holds before the tar writer waits for the uploader."""
    parallel_part_uploads: int = 2
    prefetch_workers: int = 6
    """Small objects fetched at once ahead of the tar writer."""
    prefetch_object_bytes: int = 2 * 1024**2
    """Objects up to this size are prefetched whole; larger ones are streamed in turn."""
    prefetch_bytes: int = 32 * 1024**2
    """Prefetched bytes held at most (one object more when it alone exceeds this)."""


@dataclass(frozen=True)
class BlockMember:
    landing_file: LandingFile
    """As listed: its size is the size the GET must serve."""
    member_path: str
    registered_sha256: str | None = None
    """Hex SHA-256 SciCat's origdatablock holds for the file, compared like the stored one."""
    registered_time: datetime | None = None
    """SciCat's `time` of the file: the member's mtime when given."""


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


@dataclass(frozen=True)
class _Fetched:
    data: bytes
    sha256: str
    stored: StoredObject


class _Prefetcher:
    """Fetches the small members of a block whole, in order, ahead of the tar writer."""

    def __init__(
        self,
        s3: Minio,
        bucket: str,
        members: Sequence[BlockMember],
        limits: StreamLimits,
        stop: threading.Event | None,
    ) -> None:
        self._s3, self._bucket, self._members = s3, bucket, members
        self._limits, self._stop = limits, stop
        self._pool = ThreadPoolExecutor(limits.prefetch_workers, thread_name_prefix="prefetch")
        self._pending: dict[int, Future[_Fetched]] = {}
        self._next = 0
        self._held = 0

    def take(self, index: int) -> _Fetched | None:
        """Member `index`'s bytes and SHA-256, or None for a member to stream (a large one)."""
        self._fill()
        future = self._pending.pop(index, None)
        if future is None:
            return None
        try:
            return future.result()
        finally:
            self._held -= self._members[index].landing_file.size
            self._fill()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self) -> None:
        while self._next < len(self._members) and len(self._pending) < _MAX_AHEAD:
            member = self._members[self._next]
            size = member.landing_file.size
            if size > self._limits.prefetch_object_bytes:
                self._next += 1
                continue
            if self._pending and self._held + size > self._limits.prefetch_bytes:
                return
            self._pending[self._next] = self._pool.submit(self._fetch, member)
            self._held += size
            self._next += 1

    def _fetch(self, member: BlockMember) -> _Fetched:
        if self._stop is not None and self._stop.is_set():
            raise StreamStopped
        response, stored = _get(self._s3, self._bucket, member)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        if len(data) != member.landing_file.size:
            raise FileChanged(_changed(member, len(data)))
        return _Fetched(data, hashlib.sha256(data).hexdigest(), stored)


def _get(s3: Minio, bucket: str, member: BlockMember) -> tuple[BaseHTTPResponse, StoredObject]:
    """The object's response and what its headers tell (stored checksum included), its length
    checked against the listing's; FileMissing if gone, NotRestored if still cold."""
    landing_file = member.landing_file
    try:
        response = s3.get_object(bucket, landing_file.key, request_headers=CHECKSUM_MODE)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            raise FileMissing(landing_file.relative_path) from exc
        if exc.code == "InvalidObjectState":
            raise NotRestored(landing_file) from exc
        raise
    stored = stored_object(response.headers, landing_file)
    if stored.size != landing_file.size:
        response.close()
        response.release_conn()
        raise FileChanged(_changed(member, stored.size))
    return response, stored


def _changed(member: BlockMember, served: int) -> str:
    return (
        f"file {member.landing_file.relative_path!r} changed while being packed "
        f"({member.landing_file.size} bytes listed, {served} served)"
    )


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

    Raises ChecksumMismatch, FileMissing or FileChanged (user errors), NotRestored
    (a cold object to wait for) or the S3 client's errors; in every failure the
    multipart upload is aborted, so no half-written object becomes visible.
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
    prefetcher = _Prefetcher(s3, landing_bucket, members, limits, stop)
    try:
        with tarfile.open(
            fileobj=pipe,  # type: ignore[arg-type]
            mode="w",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
            copybufsize=limits.copy_buffer_bytes,
        ) as tar:
            for index, member in enumerate(members):
                if stop is not None and stop.is_set():
                    raise StreamStopped
                fetched = prefetcher.take(index)
                data_file = _add_member(s3, landing_bucket, tar, member, fetched, stop)
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
    finally:
        prefetcher.close()
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
    fetched: _Fetched | None,
    stop: threading.Event | None,
) -> DataFile:
    landing_file = member.landing_file
    name = check_relative_path(member.member_path)
    if fetched is not None:
        stored = fetched.stored
        tar.addfile(_tar_info(name, member, stored), io.BytesIO(fetched.data))
        computed = fetched.sha256
    else:
        response, stored = _get(s3, bucket, member)
        try:
            reader = _HashingReader(response, stop)
            tar.addfile(_tar_info(name, member, stored), reader)  # type: ignore[arg-type]
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
        path=name,
        size=stored.size,
        time=_aware(member.registered_time or stored.mtime),
        chk=computed,
    )


def _tar_info(name: str, member: BlockMember, stored: StoredObject) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = stored.size
    info.mtime = int((member.registered_time or stored.mtime).timestamp())
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.astimezone()
