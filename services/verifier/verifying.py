"""Re-reading a datablock copy once, streamed, and checking every checksum."""

import asyncio
import hashlib
import posixpath
import queue
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from contracts.events import Datablock, LtsMoved, LtsVerified
from runtime import metrics
from runtime.lts import (
    LtsBackend,
    LtsNotFound,
    LtsPathError,
    Readable,
    await_readable,
    copy_id,
)
from runtime.lts import LtsRecallTimeout as NotReadableInTime
from runtime.objectstore import BucketReader, ObjectMissing
from runtime.settling import PermanentError

log = structlog.get_logger(__name__)

CHUNK_BYTES = 1024**2
"""Read and hand-off size: small enough that the queued chunks stay a few MiB."""
MAX_NAMED = 10
QUEUE_CHUNKS = 8
"""Chunks waiting for a hasher thread before the reader waits (memory: this x CHUNK_BYTES)."""
INLINE_HASH_BYTES = 1024**2
"""Members below this size are hashed by the reading thread (a hand-off costs more)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None
    bytes_read: int


class _BackgroundHasher:
    """SHA-256 in a thread of its own, fed through a bounded queue.

    hashlib releases the GIL on large buffers, so hashing here overlaps the
    reading (and the other hasher) on a second core. `feed` blocks when the
    queue is full: memory stays at `depth` chunks. `finish(None)` ends a digest:
    the returned future holds its hex value, and the next bytes start a new one.
    """

    def __init__(self, name: str, depth: int = QUEUE_CHUNKS) -> None:
        self._queue: queue.Queue[bytes | Future[str] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        digest = hashlib.sha256()
        while (item := self._queue.get()) is not None:
            if isinstance(item, Future):
                item.set_result(digest.hexdigest())
                digest = hashlib.sha256()
            else:
                digest.update(item)

    def feed(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def finish(self) -> "Future[str]":
        """The digest of everything fed since the last `finish`."""
        result: Future[str] = Future()
        self._queue.put(result)
        return result

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class _HashingReader:
    """Counts every byte the tar reader pulls through it and hands it to a hasher thread."""

    def __init__(self, source: Readable, hasher: _BackgroundHasher) -> None:
        self._source = source
        self._hasher = hasher
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._source.read(size)
        if chunk:
            self._hasher.feed(bytes(chunk))
            self.count += len(chunk)
        return chunk


@dataclass(frozen=True)
class _MemberRead:
    name: str
    size: int
    digest: "Future[str]"


def _member_name(name: str) -> str:
    return posixpath.normpath(name).lstrip("/")


def _read_members(tar: tarfile.TarFile, member_hasher: _BackgroundHasher) -> Iterator[_MemberRead]:
    """Every regular member's name, size and (future) SHA-256, read in tar order.

    A small member is hashed here; a large one's chunks go to `member_hasher`,
    so its hashing overlaps reading the next chunk.
    """
    for member in tar:
        if not member.isfile():
            continue
        handle = tar.extractfile(member)
        size = 0
        if member.size >= INLINE_HASH_BYTES and handle is not None:
            while chunk := handle.read(CHUNK_BYTES):
                member_hasher.feed(chunk)
                size += len(chunk)
            digest = member_hasher.finish()
        else:
            inline = hashlib.sha256()
            if handle is not None:
                while chunk := handle.read(CHUNK_BYTES):
                    inline.update(chunk)
                    size += len(chunk)
            digest = Future()
            digest.set_result(inline.hexdigest())
        yield _MemberRead(_member_name(member.name), size, digest)


def check_tar_stream(stream: Readable, datablock: Datablock) -> Verdict:
    """Read a tar once: its SHA-256 and size, and each member's SHA-256 and size.

    Three threads share the work: this one reads, one hashes the whole tar, one
    hashes large members (hashing inline would serialise it: two cores help only if
    hashing and I/O overlap).
    """
    tar_hasher = _BackgroundHasher("verify tar sha256")
    member_hasher = _BackgroundHasher("verify member sha256")
    try:
        reader = _HashingReader(stream, tar_hasher)
        reads: list[_MemberRead] = []
        problems: list[str] = []
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK_BYTES) as tar:  # type: ignore[call-overload]
                reads.extend(_read_members(tar, member_hasher))
        except (tarfile.TarError, EOFError) as exc:
            problems.append(f"unreadable tar ({exc})")
        while reader.read(CHUNK_BYTES):
            pass
        got = tar_hasher.finish().result()
    finally:
        tar_hasher.close()
        member_hasher.close()
    expected = {_member_name(f.path): f for f in datablock.data_file_list}
    mismatched: list[str] = []
    unexpected: list[str] = []
    seen: set[str] = set()
    for read in reads:
        want = expected.get(read.name)
        if want is None:
            unexpected.append(read.name)
        elif want.chk != read.digest.result() or want.size != read.size:
            mismatched.append(read.name)
        seen.add(read.name)
    if got != datablock.tar_sha256:
        problems.append(f"tar sha256 expected {datablock.tar_sha256}, got {got}")
    if reader.count != datablock.packed_size:
        problems.append(f"size expected {datablock.packed_size} bytes, got {reader.count}")
    if mismatched:
        problems.append("member checksum mismatch: " + _names(mismatched))
    missing = sorted(set(expected) - seen)
    if missing and not any(p.startswith("unreadable") for p in problems):
        problems.append("members missing: " + _names(missing))
    if unexpected:
        problems.append("unexpected members: " + _names(unexpected))
    if problems:
        return Verdict(False, "; ".join(problems), reader.count)
    return Verdict(True, None, reader.count)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown if len(names) <= MAX_NAMED else f"{shown} and {len(names) - MAX_NAMED} more"


async def verify_datablock(
    lts: LtsBackend,
    datablock: Datablock,
    *,
    poll_s: float,
    timeout_s: float,
    copy: str | None = None,
) -> Verdict:
    """The verdict on the LTS copy of one datablock: at its archive id, or at `copy` (a
    re-copy written beside it, `runtime.lts.copy_id`).

    An archive id that would leave the LTS root cannot come from a datablock we
    made: PermanentError (dead-lettered), never retried.
    """
    where = copy or datablock.archive_id
    try:
        await await_readable(lts, where, poll_s=poll_s, timeout_s=timeout_s)
    except NotReadableInTime as exc:
        return Verdict(False, str(exc), 0)
    except LtsNotFound as exc:
        return Verdict(False, f"no copy in LTS: {exc}", 0)
    except LtsPathError as exc:
        reason = f"Datablock archive id {datablock.archive_id!r} is not a path inside LTS"
        raise PermanentError(reason, str(exc)) from exc

    def read_all() -> Verdict:
        with lts.open_read(where) as stream:
            return check_tar_stream(stream, datablock)

    try:
        return await asyncio.to_thread(read_all)
    except LtsNotFound as exc:
        return Verdict(False, f"no copy in LTS: {exc}", 0)


async def verify_retrieved(bucket: BucketReader, key: str, datablock: Datablock) -> Verdict:
    """The verdict on a datablock's copy in the retrieval bucket (read once, streamed)."""

    def read_all() -> Verdict:
        with bucket.open(key) as stream:
            return check_tar_stream(stream, datablock)

    try:
        return await asyncio.to_thread(read_all)
    except ObjectMissing as exc:
        return Verdict(False, f"no retrieved copy: {exc}", 0)


@dataclass(frozen=True)
class CopiesToVerify:
    """Where the verifier reads copies: LTS (archive jobs) and the retrieval bucket."""

    lts: LtsBackend
    retrieved: BucketReader
    recall_poll_s: float
    recall_timeout_s: float


def _lts_copy_of(event: LtsMoved) -> str:
    """Where the ltsmover wrote this attempt (the event's location is only for people)."""
    try:
        return copy_id(event.datablock.archive_id, event.job_id, event.attempt)
    except LtsPathError as exc:
        reason = f"Datablock archive id {event.datablock.archive_id!r} is not a path inside LTS"
        raise PermanentError(reason, str(exc)) from exc


async def verify_moved_copy(event: LtsMoved, copies: CopiesToVerify) -> LtsVerified:
    """The verdict on the copy `event` announces, as the `lts.verified` event to publish."""
    block = event.datablock
    started = time.monotonic()
    if event.job_type == "retrieve":
        verdict = await verify_retrieved(copies.retrieved, event.location, block)
    else:
        verdict = await verify_datablock(
            copies.lts,
            block,
            poll_s=copies.recall_poll_s,
            timeout_s=copies.recall_timeout_s,
            copy=_lts_copy_of(event),
        )
    metrics.count_verdict(event.job_type, ok=verdict.ok, bytes_read=verdict.bytes_read)
    log.info(
        "datablock.verified" if verdict.ok else "datablock.verification_failed",
        archive_id=block.archive_id,
        attempt=event.attempt,
        bytes=verdict.bytes_read,
        ms=round((time.monotonic() - started) * 1000),
        reason=verdict.reason,
    )
    return LtsVerified(
        occurred_at=datetime.now(UTC),
        correlation_id=event.correlation_id,
        job_id=event.job_id,
        job_type=event.job_type,
        pid=event.pid,
        archive_id=block.archive_id,
        location=event.location,
        attempt=event.attempt,
        ok=verdict.ok,
        reason=verdict.reason,
    )
