"""Verifying LTS copies: whole-tar and per-member SHA-256, tape recall waits."""

import hashlib
import io
import tarfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.events import Datablock, DataFile
from runtime.lts import PosixLts
from services.verifier.verifying import (
    NotReadableInTime,
    Verdict,
    await_readable,
    check_tar_stream,
    verify_datablock,
)

ARCHIVE_ID = "openem-network/datasets/p-1/datablocks/p-1_0.tar"
MEMBERS = {"raw/a.dat": b"A" * 5000, "raw/sub/b.dat": b"B" * 70000}


def build_tar(members: dict[str, bytes]) -> tuple[bytes, Datablock]:
    """A real tar and the datablock record the datablocker would have made for it."""
    buffer = io.BytesIO()
    files = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            files.append(
                DataFile(
                    path=name,
                    size=len(data),
                    time=datetime.fromtimestamp(1_700_000_000, UTC),
                    chk=hashlib.sha256(data).hexdigest(),
                )
            )
    raw = buffer.getvalue()
    block = Datablock(
        archive_id=ARCHIVE_ID,
        size=sum(len(d) for d in members.values()),
        packed_size=len(raw),
        tar_sha256=hashlib.sha256(raw).hexdigest(),
        data_file_list=tuple(files),
    )
    return raw, block


def test_a_good_tar_verifies() -> None:
    """Every checksum matches: ok, and the whole tar was read."""
    raw, block = build_tar(MEMBERS)

    verdict = check_tar_stream(io.BytesIO(raw), block)

    assert verdict.ok is True
    assert verdict.reason is None
    assert verdict.bytes_read == len(raw)


def test_a_flipped_byte_names_the_tar_checksum_and_the_member() -> None:
    """One byte changed inside raw/sub/b.dat fails both checks, naming the member."""
    raw, block = build_tar(MEMBERS)
    offset = raw.index(b"B" * 100) + 50
    corrupted = raw[:offset] + b"C" + raw[offset + 1 :]

    verdict = check_tar_stream(io.BytesIO(corrupted), block)

    assert verdict.ok is False
    assert f"tar sha256 expected {block.tar_sha256}" in (verdict.reason or "")
    assert "member checksum mismatch: raw/sub/b.dat" in (verdict.reason or "")
    assert "raw/a.dat" not in (verdict.reason or "")


def test_a_truncated_tar_fails() -> None:
    """A copy cut short is unreadable, with the size shortfall stated."""
    raw, block = build_tar(MEMBERS)

    verdict = check_tar_stream(io.BytesIO(raw[:40000]), block)

    assert verdict.ok is False
    assert "unreadable tar" in (verdict.reason or "")
    assert f"size expected {len(raw)} bytes, got 40000" in (verdict.reason or "")


def test_a_tar_with_a_member_not_in_the_record_fails() -> None:
    """Extra or missing members are named."""
    raw, block = build_tar({**MEMBERS, "raw/extra.dat": b"E"})
    _, recorded = build_tar(MEMBERS)
    swapped = recorded.model_copy(
        update={"tar_sha256": block.tar_sha256, "packed_size": block.packed_size}
    )

    verdict = check_tar_stream(io.BytesIO(raw), swapped)

    assert verdict.ok is False
    assert verdict.reason == "unexpected members: raw/extra.dat"


class OfflineTape:
    """Opens fail with EAGAIN until `online_at` (monotonic), as a share recalling from tape."""

    def __init__(self, online_at: float) -> None:
        self.online_at = online_at
        self.attempts = 0

    def __call__(self, path: Path):
        self.attempts += 1
        if time.monotonic() < self.online_at:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return path.open("rb")


async def test_a_copy_on_tape_is_verified_once_recalled(tmp_path: Path) -> None:
    """Reads failing for 0.3 s are retried every 0.05 s; then the copy verifies."""
    raw, block = build_tar(MEMBERS)
    tape = OfflineTape(time.monotonic() + 0.3)
    lts = PosixLts(tmp_path, opener=tape)
    lts.write(ARCHIVE_ID, io.BytesIO(raw), len(raw))

    verdict = await verify_datablock(lts, block, poll_s=0.05, timeout_s=5.0)

    assert verdict.ok is True
    assert tape.attempts >= 4


async def test_a_copy_that_stays_on_tape_fails_cleanly_after_the_timeout(tmp_path: Path) -> None:
    """Past recall_timeout_s the verdict is a failure that says why."""
    raw, block = build_tar(MEMBERS)
    lts = PosixLts(tmp_path, opener=OfflineTape(time.monotonic() + 60))
    lts.write(ARCHIVE_ID, io.BytesIO(raw), len(raw))
    started = time.monotonic()

    verdict = await verify_datablock(lts, block, poll_s=0.05, timeout_s=0.3)

    assert time.monotonic() - started < 1.0
    assert verdict.ok is False
    assert f"{ARCHIVE_ID} was not readable within 0.3 s" in (verdict.reason or "")


async def test_a_blocking_read_counts_against_the_deadline(tmp_path: Path) -> None:
    """A probe that hangs does not hang the verifier past its deadline."""

    def hanging(path: Path):
        time.sleep(0.6)
        return path.open("rb")

    lts = PosixLts(tmp_path, opener=hanging)
    lts.write(ARCHIVE_ID, io.BytesIO(b"x"), 1)

    with pytest.raises(NotReadableInTime, match="reading blocked"):
        await await_readable(lts, ARCHIVE_ID, poll_s=0.05, timeout_s=0.2)


async def test_a_missing_copy_fails(tmp_path: Path) -> None:
    """No copy at all is a failed verification (the ltsmover re-copies)."""
    _, block = build_tar(MEMBERS)

    verdict = await verify_datablock(PosixLts(tmp_path), block, poll_s=0.05, timeout_s=1.0)

    assert verdict.ok is False
    assert (verdict.reason or "").startswith("no copy in LTS")


LARGE_MEMBERS = {"raw/small.dat": b"s" * 100, "raw/large.bin": bytes(range(256)) * 12_288}
"""A 3 MiB member: hashed by the member-hashing thread, not the reading one."""


def test_large_members_hashed_in_a_second_thread_verify() -> None:
    """A tar with a multi-MiB member next to a small one verifies, every byte counted."""
    raw, block = build_tar(LARGE_MEMBERS)

    verdict = check_tar_stream(io.BytesIO(raw), block)

    assert verdict == Verdict(True, None, len(raw))


def test_a_flipped_byte_in_a_large_member_names_only_that_member() -> None:
    """The member-hashing thread's digest is compared like an inline one."""
    raw, block = build_tar(LARGE_MEMBERS)
    offset = raw.index(bytes(range(256)) * 4) + 1_000_000
    corrupted = raw[:offset] + bytes([raw[offset] ^ 0xFF]) + raw[offset + 1 :]

    verdict = check_tar_stream(io.BytesIO(corrupted), block)

    assert verdict.ok is False
    assert (verdict.reason or "").endswith("member checksum mismatch: raw/large.bin")
    assert f"tar sha256 expected {block.tar_sha256}, got " in (verdict.reason or "")


class FailingSource:
    """A stream that breaks after `good` bytes, as a connection lost mid-read."""

    def __init__(self, raw: bytes, good: int) -> None:
        self._stream = io.BytesIO(raw[:good])

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._stream.read(size)
        if not chunk:
            raise ConnectionResetError("connection lost")
        return chunk


def test_a_read_error_propagates_and_leaves_no_hashing_thread() -> None:
    """Transient trouble is raised (for a retry); the hasher threads are stopped."""
    raw, block = build_tar(LARGE_MEMBERS)
    before = threading.active_count()

    with pytest.raises(ConnectionResetError):
        check_tar_stream(FailingSource(raw, 2_000_000), block)

    assert threading.active_count() == before
