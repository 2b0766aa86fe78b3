"""Cleanup after archiving against the real moto S3 server and a posix LTS: exactly the
dataset's copies go, and only when the records and LTS prove it archived."""

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.client import BaseClient
from minio import Minio

from contracts.events import Datablock, DatablocksCreated, DataFile, DatasetArchived
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from runtime.lts import PosixLts, create_lts
from runtime.s3_extras import create_multipart_upload, list_multipart_uploads
from runtime.settings import LtsSettings
from runtime.settling import PermanentError
from services.datablocker.cleanup import (
    Cleaner,
    CleanupReport,
    archived_datablocks,
    clean_archived_dataset,
    foreign_archive_ids,
    missing_lts_copies,
)
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


AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


class InMemoryRecords:
    """The datablocker's packed records and cleaned marks."""

    def __init__(self) -> None:
        self.packed: dict[str, DatablocksCreated] = {}
        self.marked: list[CleanedDataset] = []

    async def get(self, pid: str) -> DatablocksCreated | None:
        return self.packed.get(pid)

    async def mark_cleaned(self, record: CleanedDataset) -> None:
        self.marked.append(record)


class InMemoryJobs:
    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}

    async def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)


@pytest.fixture
def s3(s3_server) -> Minio:
    return minio_client(s3_server)


@pytest.fixture
def cleaner(s3: Minio, s3_extras: BaseClient, tmp_path: Path) -> Cleaner:
    lts = create_lts(LtsSettings(backend="posix", root=tmp_path), None, read_only=True)
    return Cleaner(s3, s3_extras, BUCKETS, InMemoryRecords(), InMemoryJobs(), lts)


def keys(s3: Minio, bucket: str, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/"
    return sorted(o.object_name for o in s3.list_objects(bucket, prefix=prefix, recursive=True))


def uploads(s3_extras: BaseClient, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/"
    return [u.key for u in list_multipart_uploads(s3_extras, "landing", prefix)]


def packed_dataset(cleaner: Cleaner, pid: str) -> tuple[str, ...]:
    """Two files of 11 and 5 bytes, packed into two datablocks and recorded; an upload left open."""
    put_file(cleaner.s3, pid, "a.txt", b"hello world")
    put_file(cleaner.s3, pid, "b/c.txt", b"12345")
    create_multipart_upload(cleaner.s3_extras, "landing", raw_key(pid, "b/partial.bin"))
    blocks = pack_dataset(cleaner.s3, cleaner.s3_extras, BUCKETS, pid, LIMITS)
    cleaner.records.packed[pid] = DatablocksCreated(  # type: ignore[attr-defined]
        occurred_at=AT, pid=pid, datablocks=blocks, create_archiving_job=False, owner_group="g"
    )
    return tuple(b.archive_id for b in blocks)


def archive_job(pid: str, archive_ids: tuple[str, ...], *, state: str = "verified") -> JobRecord:
    """An archive job's record for `pid`, every datablock in `state`."""
    blocks = {
        a: DatablockProgress(archive_id=a, packed_size=10240, state=state) for a in archive_ids
    }
    return JobRecord(
        job_id="job-7",
        job_type="archive",
        scicat_api="v4",
        datasets={
            pid: DatasetProgress(
                pid=pid,
                state="succeeded" if state == "verified" else "inProgress",
                datablocks=blocks,
            )
        },
        created_at=AT,
    )


def archived_by_the_job(
    cleaner: Cleaner, lts_root: Path, pid: str, archive_ids: tuple[str, ...]
) -> None:
    """What the ltsmover leaves: the tars in LTS and the job's record of verifying them."""
    for archive_id in archive_ids:
        raw = cleaner.s3.get_object("archival", archive_id).read()
        PosixLts(lts_root).write(archive_id, io.BytesIO(raw), len(raw))
    cleaner.jobs.records["job-7"] = archive_job(pid, archive_ids)  # type: ignore[attr-defined]


def archived(pid: str, archive_ids: tuple[str, ...]) -> DatasetArchived:
    return DatasetArchived(occurred_at=AT, pid=pid, job_id="job-7", archive_ids=archive_ids)


async def test_cleanup_removes_exactly_the_datasets_landing_objects_and_packed_datablocks(
    cleaner: Cleaner, tmp_path: Path
) -> None:
    """Landing files, the open upload and both tars go; another dataset's objects stay."""
    s3, s3_extras = cleaner.s3, cleaner.s3_extras
    pid, other = new_pid(), new_pid()
    archive_ids = packed_dataset(cleaner, pid)
    other_ids = packed_dataset(cleaner, other)
    archived_by_the_job(cleaner, tmp_path, pid, archive_ids)

    report = await clean_archived_dataset(archived(pid, archive_ids), cleaner)

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
    assert cleaner.records.marked == [  # type: ignore[attr-defined]
        CleanedDataset(pid=pid, job_id="job-7", archived_at=AT, archive_ids=archive_ids)
    ]


async def test_a_second_cleanup_finds_nothing_and_succeeds(
    cleaner: Cleaner, tmp_path: Path
) -> None:
    """A redelivered dataset.archived deletes nothing more and does not fail."""
    pid = new_pid()
    archive_ids = packed_dataset(cleaner, pid)
    archived_by_the_job(cleaner, tmp_path, pid, archive_ids)
    await clean_archived_dataset(archived(pid, archive_ids), cleaner)

    again = await clean_archived_dataset(archived(pid, archive_ids), cleaner)

    assert again == CleanupReport(0, 0, 0, 0, 0)


async def test_a_key_outside_the_datasets_datablocks_is_refused_before_anything_is_deleted(
    cleaner: Cleaner, tmp_path: Path
) -> None:
    """Another dataset's tar (or any other key) in archive_ids: PermanentError, nothing touched."""
    s3 = cleaner.s3
    pid, other = new_pid(), new_pid()
    archive_ids = packed_dataset(cleaner, pid)
    other_ids = packed_dataset(cleaner, other)
    archived_by_the_job(cleaner, tmp_path, pid, archive_ids)
    event = archived(pid, (*archive_ids, other_ids[0]))

    with pytest.raises(PermanentError, match="not its datablocks") as raised:
        await clean_archived_dataset(event, cleaner)

    assert other_ids[0] in (raised.value.detail or "")
    assert keys(s3, "landing", pid) == [raw_key(pid, "a.txt"), raw_key(pid, "b/c.txt")]
    assert keys(s3, "archival", pid) == sorted(archive_ids)
    assert keys(s3, "archival", other) == sorted(other_ids)
    assert cleaner.records.marked == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("lts_bytes", "why"),
    [
        (None, "no copy in LTS"),
        (b"short", "the LTS copy has 5 bytes, 10240 packed"),
    ],
)
async def test_a_datablock_not_safely_in_lts_stops_the_cleanup(
    cleaner: Cleaner, tmp_path: Path, lts_bytes: bytes | None, why: str
) -> None:
    """The job's record says verified, but one LTS copy is gone or cut: nothing marked, nothing
    deleted, the reason names the datablock."""
    s3 = cleaner.s3
    pid = new_pid()
    archive_ids = packed_dataset(cleaner, pid)
    archived_by_the_job(cleaner, tmp_path, pid, archive_ids)
    (tmp_path / archive_ids[1]).unlink()
    if lts_bytes is not None:
        PosixLts(tmp_path).write(archive_ids[1], io.BytesIO(lts_bytes), len(lts_bytes))

    with pytest.raises(PermanentError) as raised:
        await clean_archived_dataset(archived(pid, archive_ids), cleaner)

    assert raised.value.reason == (
        f"dataset.archived for {pid} (job job-7) refused, nothing was deleted: 1 datablock(s) "
        f"are not safely in LTS, e.g. {archive_ids[1]}: {why}"
    )
    assert keys(s3, "landing", pid) == [raw_key(pid, "a.txt"), raw_key(pid, "b/c.txt")]
    assert keys(s3, "archival", pid) == sorted(archive_ids)
    assert cleaner.records.marked == []  # type: ignore[attr-defined]


PID = "20.500.11935/abc"
IDS = (
    "openem-network/datasets/20.500.11935/abc/datablocks/20.500.11935-abc_0.tar",
    "openem-network/datasets/20.500.11935/abc/datablocks/20.500.11935-abc_1.tar",
)


def packed_record() -> DatablocksCreated:
    return DatablocksCreated(
        occurred_at=AT,
        pid=PID,
        datablocks=tuple(
            Datablock(
                archive_id=a,
                size=5,
                packed_size=10240,
                tar_sha256=SHA,
                data_file_list=(DataFile(path="a.txt", size=5, time=AT, chk=SHA),),
            )
            for a in IDS
        ),
        create_archiving_job=False,
        owner_group="g",
    )


def half_verified() -> JobRecord:
    record = archive_job(PID, IDS)
    record.datasets[PID].datablocks[IDS[1]].state = "moved"
    return record


def retrieve_job() -> JobRecord:
    record = archive_job(PID, IDS)
    record.job_type = "retrieve"
    return record


def failed_dataset() -> JobRecord:
    record = archive_job(PID, IDS)
    record.datasets[PID].state = "failed"
    return record


def other_dataset() -> JobRecord:
    return archive_job("20.500.11935/other", IDS)


REFUSED = "dataset.archived for 20.500.11935/abc (job job-7) refused, nothing was deleted: "


@pytest.mark.parametrize(
    ("packed", "job", "why"),
    [
        (None, archive_job(PID, IDS), "the datablocker has no record of packing the dataset"),
        (packed_record(), None, "there is no record of the job"),
        (packed_record(), retrieve_job(), "the job is a retrieve job"),
        (packed_record(), other_dataset(), "the job's record does not list the dataset"),
        (
            packed_record(),
            failed_dataset(),
            "the job's record says the dataset is failed, not archived",
        ),
        (
            packed_record(),
            half_verified(),
            f"1 of its 2 datablock(s) are not verified in LTS by the job, e.g. {IDS[1]}",
        ),
    ],
    ids=["unpacked", "no-job", "retrieve-job", "not-listed", "failed", "half-verified"],
)
def test_the_records_must_prove_every_datablock_verified_by_the_job(
    packed: DatablocksCreated | None, job: JobRecord | None, why: str
) -> None:
    """Each gap in the records refuses the event with a reason naming it."""
    with pytest.raises(PermanentError) as raised:
        archived_datablocks(archived(PID, IDS), packed, job)

    assert raised.value.reason == REFUSED + why


def test_records_that_prove_it_give_the_packed_datablocks() -> None:
    """Packed by the datablocker and verified by the archive job: its datablocks, in order."""
    blocks = archived_datablocks(archived(PID, IDS[:1]), packed_record(), archive_job(PID, IDS))

    assert [b.archive_id for b in blocks] == list(IDS)


def test_lts_copies_must_be_there_with_the_packed_size() -> None:
    """One missing, one cut, one fine: two sentences."""
    blocks = packed_record().datablocks

    assert missing_lts_copies(blocks, {IDS[0]: 10240, IDS[1]: 99}) == [
        f"{IDS[1]}: the LTS copy has 99 bytes, 10240 packed"
    ]
    assert missing_lts_copies(blocks, {IDS[0]: 10240}) == [f"{IDS[1]}: no copy in LTS"]


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
