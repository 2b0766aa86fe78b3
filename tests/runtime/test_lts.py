"""Both LTS backends against real storage: a temp dir and the moto S3 server."""

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from runtime.lts import (
    LtsBackend,
    LtsNotFound,
    LtsNotReadable,
    LtsPathError,
    LtsWriteError,
    PosixLts,
    S3ColdLts,
)

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
def backend(request, tmp_path: Path, s3_server) -> Iterator[LtsBackend]:
    if request.param == "posix":
        yield PosixLts(tmp_path / "lts")
        return
    lts = S3ColdLts(_minio(s3_server), "lts", "GLACIER")
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
    lts = S3ColdLts(client, "lts", "GLACIER")
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
