"""Both LTS backends against real storage: a temp dir and the moto S3 server."""

import io
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from runtime.lts import (
    LtsBackend,
    LtsBusy,
    LtsNotFound,
    LtsNotReadable,
    LtsPathError,
    LtsReadOnly,
    LtsWriteError,
    PosixLts,
    S3ColdLts,
    copy_id,
    create_lts,
)
from runtime.settings import LtsSettings

ARCHIVE_ID = "openem-network/datasets/20.500/abc/datablocks/20.500-abc_0.tar"
PAYLOAD = bytes(range(256)) * 4096 + b"tail"


def _minio(s3_server) -> Minio:
    return Minio(
        s3_server.endpoint.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )


@pytest.fixture(params=["posix", "s3"])
def backend(request, tmp_path: Path, s3_server, s3_extras) -> Iterator[LtsBackend]:
    if request.param == "posix":
        yield PosixLts(tmp_path / "lts")
        return
    lts = S3ColdLts(_minio(s3_server), s3_extras, "lts", "GLACIER")
    yield lts
    for obj in lts.client.list_objects("lts", recursive=True):
        lts.client.remove_object("lts", obj.object_name)


def _read_all(lts: LtsBackend, archive_id: str) -> bytes:
    lts.prepare_read(archive_id) if lts.kind == "posix" else _restore(lts, archive_id)
    with lts.open_read(archive_id) as stream:
        return stream.read()


def _restore(lts: LtsBackend, archive_id: str) -> None:
    with pytest.raises(LtsNotReadable):
        lts.prepare_read(archive_id)
    lts.prepare_read(archive_id)


def test_a_written_copy_reads_back_identical(backend: LtsBackend) -> None:
    """What goes in comes out byte for byte, with its size known without reading."""
    backend.write(ARCHIVE_ID, io.BytesIO(PAYLOAD), len(PAYLOAD))

    assert backend.size(ARCHIVE_ID) == 1048580
    assert _read_all(backend, ARCHIVE_ID) == PAYLOAD


def test_a_short_source_leaves_nothing_behind(backend: LtsBackend) -> None:
    """A source that ends early fails the write and keeps no copy."""
    with pytest.raises(LtsWriteError):
        backend.write(ARCHIVE_ID, io.BytesIO(b"only this"), 100)

    assert backend.size(ARCHIVE_ID) is None


def test_delete_removes_the_copy_and_tolerates_absence(backend: LtsBackend) -> None:
    """Deleting twice is fine; afterwards there is no copy to read."""
    backend.write(ARCHIVE_ID, io.BytesIO(b"x" * 10), 10)
    backend.delete(ARCHIVE_ID)
    backend.delete(ARCHIVE_ID)

    assert backend.size(ARCHIVE_ID) is None
    with pytest.raises(LtsNotFound):
        backend.prepare_read(ARCHIVE_ID)


@pytest.mark.parametrize(
    "archive_id", ["../outside.tar", "/etc/passwd", "a/../../outside.tar", "a/\x00b.tar", "", "."]
)
def test_paths_that_leave_the_root_are_refused(backend: LtsBackend, archive_id: str) -> None:
    """Climbing out, absolute paths, NUL bytes and empty names are refused before any I/O."""
    with pytest.raises(LtsPathError):
        backend.write(archive_id, io.BytesIO(b"x"), 1)


def test_posix_write_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """The copy appears under its final name only, with its directories created."""
    lts = PosixLts(tmp_path)
    lts.write(ARCHIVE_ID, io.BytesIO(PAYLOAD), len(PAYLOAD))
    lts.write(ARCHIVE_ID, io.BytesIO(b"replaced"), 8)

    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [ARCHIVE_ID]
    assert (tmp_path / ARCHIVE_ID).read_bytes() == b"replaced"


def test_posix_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    """A directory symlinked to elsewhere cannot be used to write outside the root."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)

    with pytest.raises(LtsPathError):
        PosixLts(root).write("escape/x.tar", io.BytesIO(b"x"), 1)
    assert list(outside.iterdir()) == []


def test_posix_reports_an_offline_file_as_not_readable(tmp_path: Path) -> None:
    """EAGAIN-like errors from the share mean 'on tape', not 'broken'."""

    def offline(path: Path):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    lts = PosixLts(tmp_path, opener=offline)
    lts.write(ARCHIVE_ID, io.BytesIO(b"x"), 1)

    with pytest.raises(LtsNotReadable):
        lts.prepare_read(ARCHIVE_ID)


def test_posix_free_fraction_comes_from_the_injected_gauge(tmp_path: Path) -> None:
    """The gauge is injectable; by default it is the share's statvfs."""
    assert PosixLts(tmp_path, free_fraction_reader=lambda: 0.25).free_fraction() == 0.25
    assert 0.0 <= (PosixLts(tmp_path).free_fraction() or 0.0) <= 1.0


def test_s3_cold_copy_needs_a_restore_before_reading(s3_server) -> None:
    """A GLACIER object cannot be read until restored; prepare_read requests the restore."""
    client = _minio(s3_server)
    lts = create_lts(LtsSettings(backend="s3", bucket="lts"), client, s3_server.settings())
    archive_id = "cold/restore-me.tar"
    lts.write(archive_id, io.BytesIO(b"cold bytes"), 10)

    assert client.stat_object("lts", archive_id).metadata["x-amz-storage-class"] == "GLACIER"
    with pytest.raises(LtsNotReadable), lts.open_read(archive_id):
        pass
    with pytest.raises(LtsNotReadable):
        lts.prepare_read(archive_id)
    lts.prepare_read(archive_id)
    with lts.open_read(archive_id) as stream:
        assert stream.read() == b"cold bytes"
    lts.delete(archive_id)


TEMP_NAME = ".20.500-abc_0.tar.part"

_WRITER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, b"half of a copy from a writer that dies")
print("writing", flush=True)
time.sleep(60)
"""


def _start_writer(temp: Path) -> subprocess.Popen[str]:
    """Another process in the middle of writing `temp`, holding its lock."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(temp)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == "writing\n"
    return writer


def _files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_posix_takes_over_the_temp_file_of_a_killed_writer(tmp_path: Path) -> None:
    """A writer killed mid-copy leaves its temp file; the next write reuses and renames it,
    its bytes gone, so nothing accumulates on the share."""
    lts = PosixLts(tmp_path)
    temp = (tmp_path / ARCHIVE_ID).with_name(TEMP_NAME)
    writer = _start_writer(temp)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert _files_below(tmp_path) == [str(temp.relative_to(tmp_path))]

    lts.write(ARCHIVE_ID, io.BytesIO(b"the copy"), 8)

    assert _files_below(tmp_path) == [ARCHIVE_ID]
    assert (tmp_path / ARCHIVE_ID).read_bytes() == b"the copy"


def test_posix_partial_file_is_never_a_copy(tmp_path: Path) -> None:
    """While only a dead writer's temp file exists, there is no copy to size or read."""
    lts = PosixLts(tmp_path)
    writer = _start_writer((tmp_path / ARCHIVE_ID).with_name(TEMP_NAME))
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    assert lts.size(ARCHIVE_ID) is None
    with pytest.raises(LtsNotFound):
        lts.prepare_read(ARCHIVE_ID)


def test_posix_refuses_a_second_writer_while_another_process_writes(tmp_path: Path) -> None:
    """A live writer's temp file is left alone: the second writer gets LtsBusy, no copy."""
    lts = PosixLts(tmp_path)
    temp = (tmp_path / ARCHIVE_ID).with_name(TEMP_NAME)
    writer = _start_writer(temp)
    try:
        with pytest.raises(LtsBusy):
            lts.write(ARCHIVE_ID, io.BytesIO(b"the copy"), 8)
        assert temp.read_bytes() == b"half of a copy from a writer that dies"
        assert lts.size(ARCHIVE_ID) is None
    finally:
        writer.kill()
        writer.wait()


class _GatedSource:
    """A source that blocks its first read until the test opens the gate."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.reading = threading.Event()
        self.gate = threading.Event()

    def read(self, size: int = -1, /) -> bytes:
        self.reading.set()
        assert self.gate.wait(10)
        return self._data.read(size)


def test_posix_refuses_a_second_writer_in_the_same_process(tmp_path: Path) -> None:
    """Two threads writing one archive id: the second gets LtsBusy, the first completes."""
    lts = PosixLts(tmp_path)
    source = _GatedSource(b"first")
    first = threading.Thread(target=lts.write, args=(ARCHIVE_ID, source, 5))
    first.start()
    try:
        assert source.reading.wait(10)
        with pytest.raises(LtsBusy):
            lts.write(ARCHIVE_ID, io.BytesIO(b"second"), 6)
    finally:
        source.gate.set()
        first.join(10)

    assert (tmp_path / ARCHIVE_ID).read_bytes() == b"first"
    assert _files_below(tmp_path) == [ARCHIVE_ID]


def test_posix_removes_temp_files_of_earlier_versions_only_for_its_copy(tmp_path: Path) -> None:
    """Per-write uuid temp files left by earlier versions go; another datablock's stay."""
    lts = PosixLts(tmp_path)
    folder = (tmp_path / ARCHIVE_ID).parent
    folder.mkdir(parents=True)
    mine = folder / ".20.500-abc_0.tar.0123456789abcdef0123456789abcdef.part"
    other = folder / ".20.500-abc_1.tar.0123456789abcdef0123456789abcdef.part"
    mine.write_bytes(b"dead")
    other.write_bytes(b"dead")

    lts.write(ARCHIVE_ID, io.BytesIO(b"the copy"), 8)

    assert sorted(p.name for p in folder.iterdir()) == [other.name, "20.500-abc_0.tar"]


def test_a_recopy_lies_beside_the_copy_in_a_folder_of_its_own() -> None:
    """Attempt 0 is the archive id; a re-copy keeps its file name, in a folder per job and try."""
    first = copy_id(ARCHIVE_ID, "job-7", 0)
    again = copy_id(ARCHIVE_ID, "job-7", 2)

    assert first == ARCHIVE_ID
    assert again == (
        "openem-network/datasets/20.500/abc/datablocks/.recopy-c37bd1a8462d-2/20.500-abc_0.tar"
    )
    assert copy_id(ARCHIVE_ID, "job-8", 2) != again


def test_promote_replaces_the_copy_with_the_staged_one_and_leaves_nothing_beside(
    backend: LtsBackend,
) -> None:
    """Old copy and staged re-copy: once promoted the archive id reads the re-copy, no stage."""
    staged = copy_id(ARCHIVE_ID, "job-7", 1)
    backend.write(ARCHIVE_ID, io.BytesIO(b"old copy"), 8)
    backend.write(staged, io.BytesIO(PAYLOAD), len(PAYLOAD), staged=True)

    assert backend.size(ARCHIVE_ID) == 8
    backend.promote(staged, ARCHIVE_ID, len(PAYLOAD))

    assert _read_all(backend, ARCHIVE_ID) == PAYLOAD
    assert backend.size(staged) is None


def test_promote_without_the_staged_copy_or_of_another_size_changes_nothing(
    backend: LtsBackend,
) -> None:
    """A missing stage is LtsNotFound, a wrong size LtsWriteError; the copy stays as it was."""
    staged = copy_id(ARCHIVE_ID, "job-7", 1)
    backend.write(ARCHIVE_ID, io.BytesIO(b"old copy"), 8)

    with pytest.raises(LtsNotFound):
        backend.promote(staged, ARCHIVE_ID, len(PAYLOAD))
    backend.write(staged, io.BytesIO(b"short"), 5, staged=True)
    with pytest.raises(LtsWriteError, match="holds 5 bytes, not the recorded"):
        backend.promote(staged, ARCHIVE_ID, len(PAYLOAD))

    assert backend.size(ARCHIVE_ID) == 8
    assert backend.size(staged) == 5


def test_posix_removes_the_recopy_folder_with_its_last_file(tmp_path: Path) -> None:
    """Promoting or deleting a re-copy leaves no empty `.recopy-*` folder behind."""
    lts = PosixLts(tmp_path)
    for attempt in (1, 2):
        staged = copy_id(ARCHIVE_ID, "job-7", attempt)
        lts.write(staged, io.BytesIO(b"copy"), 4, staged=True)
    lts.promote(copy_id(ARCHIVE_ID, "job-7", 1), ARCHIVE_ID, 4)
    lts.delete(copy_id(ARCHIVE_ID, "job-7", 2))

    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        ARCHIVE_ID
    ]
    assert list(tmp_path.rglob(".recopy-*")) == []


def test_a_staged_s3_recopy_is_readable_and_goes_cold_once_promoted(s3_server, s3_extras) -> None:
    """The stage is written STANDARD (verified without a restore); in place it is GLACIER."""
    lts = S3ColdLts(_minio(s3_server), s3_extras, "lts", "GLACIER")
    archive_id = ARCHIVE_ID.replace("abc", "cold-recopy")
    staged = copy_id(archive_id, "job-7", 1)
    lts.write(staged, io.BytesIO(PAYLOAD), len(PAYLOAD), staged=True)

    with lts.open_read(staged) as stream:
        assert stream.read() == PAYLOAD
    lts.promote(staged, archive_id, len(PAYLOAD))

    with pytest.raises(LtsNotReadable):
        lts.prepare_read(archive_id)
    assert lts.size(archive_id) == len(PAYLOAD)
    assert lts.size(staged) is None


def test_a_read_only_backend_reads_and_measures_but_never_changes_a_copy(tmp_path: Path) -> None:
    """create_lts(read_only=True): size and reads work; write, promote and delete raise."""
    PosixLts(tmp_path).write(ARCHIVE_ID, io.BytesIO(PAYLOAD), len(PAYLOAD))
    lts = create_lts(LtsSettings(backend="posix", root=tmp_path), None, read_only=True)

    assert lts.size(ARCHIVE_ID) == len(PAYLOAD)
    assert _read_all(lts, ARCHIVE_ID) == PAYLOAD
    with pytest.raises(LtsReadOnly):
        lts.delete(ARCHIVE_ID)
    with pytest.raises(LtsReadOnly):
        lts.write(ARCHIVE_ID, io.BytesIO(b"x"), 1)
    with pytest.raises(LtsReadOnly):
        lts.promote(copy_id(ARCHIVE_ID, "job-7", 1), ARCHIVE_ID, 1)
    assert (tmp_path / ARCHIVE_ID).read_bytes() == PAYLOAD
