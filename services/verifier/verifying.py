"""Re-reading a datablock copy once, streamed, and checking every checksum."""

import asyncio
import hashlib
import posixpath
import tarfile
from dataclasses import dataclass

from contracts.events import Datablock
from runtime.consuming import PermanentError
from runtime.lts import LtsBackend, LtsNotFound, LtsPathError, Readable, await_readable
from runtime.lts import LtsRecallTimeout as NotReadableInTime
from runtime.objectstore import BucketReader, ObjectMissing

CHUNK_BYTES = 4 * 1024**2
MAX_NAMED = 10


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None
    bytes_read: int


class _HashingReader:
    """Hashes every byte the tar reader pulls through it."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._source.read(size)
        self.digest.update(chunk)
        self.count += len(chunk)
        return chunk


def _member_name(name: str) -> str:
    return posixpath.normpath(name).lstrip("/")


def check_tar_stream(stream: Readable, datablock: Datablock) -> Verdict:
    """Read a tar once: its SHA-256 and size, and each member's SHA-256 and size."""
    reader = _HashingReader(stream)
    expected = {_member_name(f.path): f for f in datablock.data_file_list}
    mismatched: list[str] = []
    unexpected: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    try:
        with tarfile.open(fileobj=reader, mode="r|", bufsize=CHUNK_BYTES) as tar:  # type: ignore[call-overload]
            for member in tar:
                if not member.isfile():
                    continue
                name = _member_name(member.name)
                digest = hashlib.sha256()
                handle = tar.extractfile(member)
                size = 0
                if handle is not None:
                    while chunk := handle.read(CHUNK_BYTES):
                        digest.update(chunk)
                        size += len(chunk)
                want = expected.get(name)
                if want is None:
                    unexpected.append(name)
                elif want.chk != digest.hexdigest() or want.size != size:
                    mismatched.append(name)
                seen.add(name)
    except (tarfile.TarError, EOFError) as exc:
        problems.append(f"unreadable tar ({exc})")
    while reader.read(CHUNK_BYTES):
        pass
    got = reader.digest.hexdigest()
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
    lts: LtsBackend, datablock: Datablock, *, poll_s: float, timeout_s: float
) -> Verdict:
    """The verdict on the LTS copy of one datablock.

    An archive id that would leave the LTS root cannot come from a datablock we
    made: PermanentError (dead-lettered), never retried.
    """
    try:
        await await_readable(lts, datablock.archive_id, poll_s=poll_s, timeout_s=timeout_s)
    except NotReadableInTime as exc:
        return Verdict(False, str(exc), 0)
    except LtsNotFound as exc:
        return Verdict(False, f"no copy in LTS: {exc}", 0)
    except LtsPathError as exc:
        reason = f"Datablock archive id {datablock.archive_id!r} is not a path inside LTS"
        raise PermanentError(reason, str(exc)) from exc

    def read_all() -> Verdict:
        with lts.open_read(datablock.archive_id) as stream:
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
