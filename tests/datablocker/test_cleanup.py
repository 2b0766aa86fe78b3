"""Cleanup after archiving against the real moto S3 server: exactly the dataset's copies go."""

from datetime import UTC, datetime

import pytest
from botocore.client import BaseClient
from minio import Minio

from contracts.events import DatasetArchived
from runtime.s3_extras import create_multipart_upload, list_multipart_uploads
from runtime.settling import PermanentError
from services.datablocker.cleanup import CleanupReport, clean_archived_dataset, foreign_archive_ids
from services.datablocker.packing import Buckets, PackingLimits, pack_dataset
from services.datablocker.results import CleanedDataset
from services.datablocker.tarball import StreamLimits
from tests.datablocker.landing_fixtures import MiB, minio_client, new_pid, put_file, raw_key

BUCKETS = Buckets(landing="landing", archival="archival")
LIMITS = PackingLimits(
    target_size_bytes=10,
    stream=StreamLimits(part_size_bytes=5 * MiB, copy_buffer_bytes=MiB, pipe_chunks=2),
    restore_timeout_s=5.0,
    restore_poll_s=0.05,
)


class InMemoryMarks:
    def __init__(self) -> None:
        self.records: list[CleanedDataset] = []

    async def mark_cleaned(self, record: CleanedDataset) -> None:
        self.records.append(record)


@pytest.fixture
def s3(s3_server) -> Minio:
    return minio_client(s3_server)


def keys(s3: Minio, bucket: str, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/"
    return sorted(o.object_name for o in s3.list_objects(bucket, prefix=prefix, recursive=True))


def uploads(s3_extras: BaseClient, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/"
    return [u.key for u in list_multipart_uploads(s3_extras, "landing", prefix)]


def packed_dataset(s3: Minio, s3_extras: BaseClient, pid: str) -> tuple[str, ...]:
    """Two files of 11 and 5 bytes, packed into two datablocks; an upload left open."""
    put_file(s3, pid, "a.txt", b"hello world")
    put_file(s3, pid, "b/c.txt", b"12345")
    create_multipart_upload(s3_extras, "landing", raw_key(pid, "b/partial.bin"))
    return tuple(b.archive_id for b in pack_dataset(s3, s3_extras, BUCKETS, pid, LIMITS))


def archived(pid: str, archive_ids: tuple[str, ...]) -> DatasetArchived:
    return DatasetArchived(
        occurred_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        pid=pid,
        job_id="job-7",
        archive_ids=archive_ids,
    )


async def test_cleanup_removes_exactly_the_datasets_landing_objects_and_listed_datablocks(
    s3: Minio,
    s3_extras: BaseClient,
) -> None:
    """Landing files, the open upload and both tars go; another dataset's objects stay."""
    pid, other = new_pid(), new_pid()
    archive_ids = packed_dataset(s3, s3_extras, pid)
    other_ids = packed_dataset(s3, s3_extras, other)
    marks = InMemoryMarks()

    report = await clean_archived_dataset(archived(pid, archive_ids), s3, s3_extras, BUCKETS, marks)

    assert report == CleanupReport(
        landing_objects=2,
        landing_bytes=16,
        uploads_aborted=1,
        datablocks=2,
        datablock_bytes=20480,
    )
    assert (report.objects, report.bytes) == (5, 20496)
    assert keys(s3, "landing", pid) == []
    assert keys(s3, "archival", pid) == []
    assert uploads(s3_extras, pid) == []
    assert keys(s3, "landing", other) == [raw_key(other, "a.txt"), raw_key(other, "b/c.txt")]
    assert keys(s3, "archival", other) == sorted(other_ids)
    assert uploads(s3_extras, other) == [raw_key(other, "b/partial.bin")]
    assert marks.records == [
        CleanedDataset(
            pid=pid,
            job_id="job-7",
            archived_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
            archive_ids=archive_ids,
        )
    ]


async def test_a_second_cleanup_finds_nothing_and_succeeds(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """A redelivered dataset.archived deletes nothing more and does not fail."""
    pid = new_pid()
    event = archived(pid, packed_dataset(s3, s3_extras, pid))
    await clean_archived_dataset(event, s3, s3_extras, BUCKETS, InMemoryMarks())

    again = await clean_archived_dataset(event, s3, s3_extras, BUCKETS, InMemoryMarks())

    assert again == CleanupReport(0, 0, 0, 0, 0)


async def test_a_key_outside_the_datasets_datablocks_is_refused_before_anything_is_deleted(
    s3: Minio,
    s3_extras: BaseClient,
) -> None:
    """Another dataset's tar (or any other key) in archive_ids: PermanentError, nothing touched."""
    pid, other = new_pid(), new_pid()
    archive_ids = packed_dataset(s3, s3_extras, pid)
    other_ids = packed_dataset(s3, s3_extras, other)
    marks = InMemoryMarks()
    event = archived(pid, (*archive_ids, other_ids[0]))

    with pytest.raises(PermanentError, match="not its datablocks") as raised:
        await clean_archived_dataset(event, s3, s3_extras, BUCKETS, marks)

    assert other_ids[0] in (raised.value.detail or "")
    assert keys(s3, "landing", pid) == [raw_key(pid, "a.txt"), raw_key(pid, "b/c.txt")]
    assert keys(s3, "archival", pid) == sorted(archive_ids)
    assert keys(s3, "archival", other) == sorted(other_ids)
    assert marks.records == []


@pytest.mark.parametrize(
    "suffix",
    [
        "../../other/raw_files/a.txt",
        "x_0.tar",
        "{dashed}_0.tar/../../raw_files/a.txt",
        "{dashed}_.tar",
    ],
)
def test_only_the_datablocker_s_own_key_shape_is_accepted(suffix: str) -> None:
    """Anything but `{prefix}{pid with / -> -}_{n}.tar` is foreign, even below the prefix."""
    pid = "20.500.11935/abc"
    prefix = "openem-network/datasets/20.500.11935/abc/datablocks/"
    candidate = prefix + suffix.format(dashed="20.500.11935-abc")

    assert foreign_archive_ids(pid, [prefix + "20.500.11935-abc_12.tar", candidate]) == [candidate]
