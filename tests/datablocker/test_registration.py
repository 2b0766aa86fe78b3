"""Packing checks the landing zone against SciCat's origdatablocks (real moto, a fake SciCat)."""

import hashlib
import io
import tarfile
from datetime import UTC, datetime

import pytest
import structlog
from botocore.client import BaseClient
from minio import Minio

from contracts.events import DatablocksCreated, DatasetPackingFailed, UploadFinished
from services.datablocker.packing import Buckets, PackingLimits, pack_upload
from services.datablocker.planning import LandingFile
from services.datablocker.registration import DatasetNotInScicat, RegisteredFile, reconcile
from services.datablocker.results import CleanedDataset
from services.datablocker.tarball import StreamLimits
from tests.datablocker.landing_fixtures import MiB, minio_client, new_pid, put_file, raw_key

BUCKETS = Buckets(landing="landing", archival="archival")
LIMITS = PackingLimits(
    target_size_bytes=1024 * MiB,
    stream=StreamLimits(part_size_bytes=5 * MiB, copy_buffer_bytes=1 * MiB, pipe_chunks=2),
    restore_timeout_s=5.0,
    restore_poll_s=0.05,
)
MARKER = ".archiver-upload-complete"
HELLO_SHA256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
OTHER_SHA256 = "0123456789abcdef" * 4
MAY_1 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FakeOrigdatablocks:
    """SciCat's origdatablocks of one dataset, as the reader returns them (or its error)."""

    def __init__(self, *files: RegisteredFile, down: Exception | None = None) -> None:
        self.files = files
        self.down = down
        self.reads: list[str] = []

    async def registered_files(self, pid: str) -> tuple[RegisteredFile, ...]:
        self.reads.append(pid)
        if self.down is not None:
            raise self.down
        return self.files


class InMemoryResults:
    def __init__(self) -> None:
        self.stored: dict[str, DatablocksCreated] = {}

    async def get(self, pid: str) -> DatablocksCreated | None:
        return self.stored.get(pid)

    async def put(self, event: DatablocksCreated) -> None:
        self.stored[event.pid] = event

    async def cleaned(self, pid: str) -> CleanedDataset | None:
        return None


@pytest.fixture
def s3(s3_server) -> Minio:
    return minio_client(s3_server)


def finished(pid: str) -> UploadFinished:
    return UploadFinished(
        occurred_at=datetime.now(UTC),
        pid=pid,
        owner_group="g",
        create_archiving_job=False,
        source="finalize",
    )


def registered(path: str, size: int | None, sha256: str | None = None, time=None):
    return RegisteredFile(path=path, size=size, time=time, sha256=sha256)


async def pack(
    s3: Minio,
    s3_extras: BaseClient,
    pid: str,
    origdatablocks_source: FakeOrigdatablocks,
    results: InMemoryResults | None = None,
):
    return await pack_upload(
        finished(pid),
        s3,
        s3_extras,
        BUCKETS,
        LIMITS,
        results or InMemoryResults(),
        origdatablocks=origdatablocks_source,
        completion_marker=MARKER,
    )


def datablock_keys(s3: Minio, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/datablocks/"
    return [o.object_name for o in s3.list_objects("archival", prefix=prefix, recursive=True)]


def tar_members(s3: Minio, archive_id: str) -> dict[str, tarfile.TarInfo]:
    data = s3.get_object("archival", archive_id).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: m for m in tar.getmembers()}


async def test_a_registered_file_missing_from_the_landing_zone_fails_the_dataset(
    s3: Minio,
    s3_extras: BaseClient,
) -> None:
    """Registered b.txt and frames/x.bin never arrived: user failure naming both, nothing kept."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    origdatablocks_source = FakeOrigdatablocks(
        registered("a.txt", 11), registered("b.txt", 3), registered("frames/x.bin", 5)
    )
    results = InMemoryResults()

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source, results)

    assert isinstance(outcome, DatasetPackingFailed)
    assert outcome.kind == "user"
    assert outcome.reason == (
        f"dataset {pid}: 2 files registered in SciCat are missing from the landing zone: "
        "'b.txt', 'frames/x.bin'"
    )
    assert datablock_keys(s3, pid) == []
    assert results.stored == {}


async def test_many_missing_files_are_named_first_few_then_counted(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """Eight missing files: five named in path order, then "and 3 more"."""
    pid = new_pid()
    put_file(s3, pid, "present.txt", b"x")
    origdatablocks_source = FakeOrigdatablocks(
        registered("present.txt", 1), *(registered(f"m{n}.dat", 1) for n in range(8))
    )

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatasetPackingFailed)
    assert outcome.reason == (
        f"dataset {pid}: 8 files registered in SciCat are missing from the landing zone: "
        "'m0.dat', 'm1.dat', 'm2.dat', 'm3.dat', 'm4.dat' and 3 more"
    )


async def test_a_file_not_matching_scicats_checksum_fails_the_dataset(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """S3's own checksum matches, SciCat's `chk` does not: user failure naming the file, no tar."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    put_file(s3, pid, "b.txt", b"b")
    origdatablocks_source = FakeOrigdatablocks(
        registered("a.txt", 11, OTHER_SHA256), registered("b.txt", 1, sha256=None)
    )

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatasetPackingFailed)
    assert outcome.kind == "user"
    assert outcome.reason == (
        f"file 'a.txt': SHA-256 {HELLO_SHA256} does not match the one registered in SciCat, "
        f"{OTHER_SHA256}"
    )
    assert datablock_keys(s3, pid) == []


async def test_a_file_of_another_size_than_registered_fails_the_dataset(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """11 bytes uploaded, 12 registered: user failure before anything is packed."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    origdatablocks_source = FakeOrigdatablocks(registered("a.txt", 12, HELLO_SHA256))

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatasetPackingFailed)
    assert outcome.kind == "user"
    assert outcome.reason == (
        f"dataset {pid}: 1 file differs in size from SciCat's registration: "
        "'a.txt' (11 bytes uploaded, 12 registered)"
    )
    assert datablock_keys(s3, pid) == []


async def test_member_time_comes_from_scicat_else_the_objects_metadata(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """a.txt has SciCat's time (not its mtime metadata); b.txt, registered without, its metadata."""
    pid = new_pid()
    for name in ("a.txt", "b.txt"):
        s3.put_object(
            "landing", raw_key(pid, name), io.BytesIO(b"z"), 1, metadata={"mtime": "1700000000"}
        )
    z_sha256 = hashlib.sha256(b"z").hexdigest()
    origdatablocks_source = FakeOrigdatablocks(
        registered("a.txt", 1, z_sha256, MAY_1), registered("b.txt", 1)
    )

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatablocksCreated)
    (block,) = outcome.datablocks
    members = tar_members(s3, block.archive_id)
    assert members["a.txt"].mtime == 1714564800
    assert members["b.txt"].mtime == 1700000000
    times = {f.path: f.time for f in block.data_file_list}
    assert times == {
        "a.txt": MAY_1,
        "b.txt": datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    }


async def test_a_dataset_without_origdatablocks_is_packed_as_it_lies(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """No registered files: everything below raw_files/ is packed (the marker aside)."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    put_file(s3, pid, "deep/b.txt", b"b")
    put_file(s3, pid, MARKER, b"{}")
    origdatablocks_source = FakeOrigdatablocks()

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatablocksCreated)
    assert origdatablocks_source.reads == [pid]
    assert [f.path for b in outcome.datablocks for f in b.data_file_list] == [
        "a.txt",
        "deep/b.txt",
    ]


async def test_an_unregistered_landing_object_is_packed_and_reported(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """extra.log is not in SciCat: packed all the same, with one warning naming it."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    put_file(s3, pid, "extra.log", b"e")
    put_file(s3, pid, MARKER, b"{}")
    origdatablocks_source = FakeOrigdatablocks(registered("a.txt", 11, HELLO_SHA256))

    with structlog.testing.capture_logs() as logs:
        outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatablocksCreated)
    (block,) = outcome.datablocks
    assert sorted(tar_members(s3, block.archive_id)) == ["a.txt", "extra.log"]
    warnings = [e for e in logs if e["event"] == "landing.unregistered_files_packed"]
    assert warnings == [
        {
            "event": "landing.unregistered_files_packed",
            "log_level": "warning",
            "files": 1,
            "paths": "'extra.log'",
        }
    ]


async def test_a_completion_marker_registered_as_a_file_is_packed(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """A dataset that really holds a file of the marker's name keeps it."""
    pid = new_pid()
    put_file(s3, pid, MARKER, b"{}")
    origdatablocks_source = FakeOrigdatablocks(registered(MARKER, 2))

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatablocksCreated)
    assert [f.path for f in outcome.datablocks[0].data_file_list] == [MARKER]


async def test_files_of_a_dataset_scicat_does_not_know_are_not_packed(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """SciCat has no such dataset: a user failure saying so; no tar."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    put_file(s3, pid, MARKER, b"{}")
    origdatablocks_source = FakeOrigdatablocks(
        down=DatasetNotInScicat(f"SciCat knows no dataset {pid} (404)")
    )

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatasetPackingFailed)
    assert outcome.kind == "user"
    assert outcome.reason == (
        f"dataset {pid} is not registered in SciCat, so its 1 file in the landing zone "
        "cannot be archived; register the dataset and upload again"
    )
    assert datablock_keys(s3, pid) == []


async def test_an_unknown_dataset_with_nothing_uploaded_has_no_files(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """Unknown to SciCat and empty (a stray upload.finished): the usual "no files" failure."""
    pid = new_pid()
    origdatablocks_source = FakeOrigdatablocks(
        down=DatasetNotInScicat(f"SciCat knows no dataset {pid} (404)")
    )

    outcome = await pack(s3, s3_extras, pid, origdatablocks_source)

    assert isinstance(outcome, DatasetPackingFailed)
    assert (outcome.kind, outcome.reason) == (
        "user",
        f"dataset {pid} has no files in the landing zone",
    )


async def test_scicat_down_raises_before_anything_is_written(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """Reading the origdatablocks fails: the error propagates (nak for later), no tar, no result."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    results = InMemoryResults()

    with pytest.raises(ConnectionError):
        await pack(
            s3,
            s3_extras,
            pid,
            FakeOrigdatablocks(down=ConnectionError("SciCat unreachable")),
            results,
        )

    assert datablock_keys(s3, pid) == []
    assert results.stored == {}


def test_registered_paths_with_a_leading_dot_slash_match_landing_paths() -> None:
    """SciCat's `./a.txt` is the landing zone's `a.txt`; the first of duplicate entries counts."""
    landing = [LandingFile("k/raw_files/a.txt", "a.txt", 1, MAY_1)]

    result = reconcile(
        "p/1",
        landing,
        [registered("./a.txt", 1, time=MAY_1), registered("a.txt", 1)],
        completion_marker=MARKER,
    )

    assert result.files == landing
    assert result.registered == {"a.txt": registered("./a.txt", 1, time=MAY_1)}
    assert result.unregistered == []
