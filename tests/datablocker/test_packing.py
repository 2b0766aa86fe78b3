"""Packing against the real moto S3 server: identical members, checksums, failures, restores."""

import hashlib
import io
import os
import tarfile
from datetime import UTC, datetime

import pytest
from botocore.client import BaseClient
from minio import Minio

from contracts.events import DatablocksCreated, DatasetPackingFailed, UploadFinished
from runtime.s3_extras import create_multipart_upload, list_multipart_uploads
from services.datablocker.landing_objects import FileMissing, list_dataset
from services.datablocker.packing import (
    AlreadyCleaned,
    Buckets,
    DatasetRejected,
    PackingLimits,
    pack_dataset,
    pack_upload,
)
from services.datablocker.results import CleanedDataset
from services.datablocker.tarball import BlockMember, StreamLimits, stream_datablock
from tests.datablocker.landing_fixtures import (
    MiB,
    minio_client,
    new_pid,
    put_file,
    put_multipart,
    raw_key,
)

BUCKETS = Buckets(landing="landing", archival="archival")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HELLO_SHA256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"


def limits(target: int = 1024 * MiB) -> PackingLimits:
    return PackingLimits(
        target_size_bytes=target,
        stream=StreamLimits(
            part_size_bytes=5 * MiB,
            copy_buffer_bytes=1 * MiB,
            pipe_chunks=2,
            parallel_part_uploads=2,
        ),
        restore_timeout_s=5.0,
        restore_poll_s=0.05,
    )


@pytest.fixture
def s3(s3_server) -> Minio:
    return minio_client(s3_server)


def tar_members(s3: Minio, archive_id: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    data = s3.get_object("archival", archive_id).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: (m, tar.extractfile(m).read()) for m in tar.getmembers()}  # type: ignore[union-attr]


def datablock_keys(s3: Minio, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/datablocks/"
    return sorted(o.object_name for o in s3.list_objects("archival", prefix=prefix, recursive=True))


def open_uploads(s3_extras: BaseClient, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/datablocks/"
    return [u.key for u in list_multipart_uploads(s3_extras, "archival", prefix)]


def test_a_mixed_dataset_becomes_a_tar_of_byte_identical_members(
    s3: Minio, s3_server, s3_extras: BaseClient
) -> None:
    """Empty file, nested dirs, unicode names and a multipart file come back byte for byte."""
    pid = new_pid()
    big = os.urandom(11 * MiB + 123)
    put_file(s3, pid, "empty.dat", b"")
    put_file(s3, pid, "hello.txt", b"hello world")
    put_file(s3, pid, "run 1/Ångström/µ-spectrum.csv", b"1,2,3\n")
    put_multipart(s3_server, pid, "raw/big.bin", big, part_size=5 * MiB)

    blocks = pack_dataset(s3, s3_extras, BUCKETS, pid, limits())

    archive_id = f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar"
    assert [b.archive_id for b in blocks] == [archive_id]
    members = tar_members(s3, archive_id)
    assert sorted(members) == [
        "empty.dat",
        "hello.txt",
        "raw/big.bin",
        "run 1/Ångström/µ-spectrum.csv",
    ]
    assert members["empty.dat"][1] == b""
    assert members["hello.txt"][1] == b"hello world"
    assert members["run 1/Ångström/µ-spectrum.csv"][1] == b"1,2,3\n"
    assert members["raw/big.bin"][1] == big
    assert {info.mode for info, _ in members.values()} == {0o644}
    assert members["raw/big.bin"][0].size == 11 * MiB + 123
    block = blocks[0]
    files = {f.path: f for f in block.data_file_list}
    assert files["empty.dat"].chk == EMPTY_SHA256
    assert files["hello.txt"].chk == HELLO_SHA256
    assert files["raw/big.bin"].chk == hashlib.sha256(big).hexdigest()
    assert block.size == 11 * MiB + 123 + 11 + 6
    tar_bytes = s3.get_object("archival", archive_id).read()
    assert block.packed_size == len(tar_bytes)
    assert block.tar_sha256 == hashlib.sha256(tar_bytes).hexdigest()
    assert block.packed_size > 5 * MiB  # the tar itself went up in several parts


def test_member_mtime_comes_from_the_clients_metadata_else_last_modified(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """An `mtime` metadata value wins; without one, the object's Last-Modified is used."""
    pid = new_pid()
    s3.put_object(
        "landing", raw_key(pid, "a.txt"), io.BytesIO(b"a"), 1, metadata={"mtime": "1700000000"}
    )
    s3.put_object("landing", raw_key(pid, "b.txt"), io.BytesIO(b"b"), 1)

    (block,) = pack_dataset(s3, s3_extras, BUCKETS, pid, limits())

    members = tar_members(s3, block.archive_id)
    assert members["a.txt"][0].mtime == 1700000000
    assert block.data_file_list[0].time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert abs(members["b.txt"][0].mtime - datetime.now(UTC).timestamp()) < 120


def test_blocks_split_at_the_target_size(s3: Minio, s3_extras: BaseClient) -> None:
    """With a 25-byte target, files of 10,10,10,50 bytes make blocks [a,b] [c] [d]."""
    pid = new_pid()
    for name, size in (("a", 10), ("b", 10), ("c", 10), ("d", 50)):
        put_file(s3, pid, name, name.encode() * size)

    blocks = pack_dataset(s3, s3_extras, BUCKETS, pid, limits(target=25))

    flat = pid.replace("/", "-")
    assert [b.archive_id.rsplit("/", 1)[1] for b in blocks] == [
        f"{flat}_0.tar",
        f"{flat}_1.tar",
        f"{flat}_2.tar",
    ]
    assert [[f.path for f in b.data_file_list] for b in blocks] == [["a", "b"], ["c"], ["d"]]
    assert [b.size for b in blocks] == [20, 10, 50]
    assert sorted(tar_members(s3, blocks[2].archive_id)) == ["d"]
    assert datablock_keys(s3, pid) == sorted(b.archive_id for b in blocks)


def test_a_checksum_mismatch_fails_the_dataset_and_leaves_no_datablock(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """The file is named; the block written before it is deleted again."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"a" * 10)
    put_file(s3, pid, "b.txt", b"corrupted", checksum_of=b"original")

    with pytest.raises(DatasetRejected) as caught:
        pack_dataset(s3, s3_extras, BUCKETS, pid, limits(target=10))

    assert caught.value.kind == "user"
    assert "'b.txt'" in caught.value.reason
    assert "does not match" in caught.value.reason
    assert datablock_keys(s3, pid) == []
    assert open_uploads(s3_extras, pid) == []


def test_a_file_gone_before_it_is_read_is_reported_missing(s3: Minio) -> None:
    """An object deleted after listing fails its block by name; nothing is written."""
    pid = new_pid()
    put_file(s3, pid, "kept.txt", b"kept")
    put_file(s3, pid, "gone.txt", b"gone")
    listed = list_dataset(s3, "landing", pid)
    members = [BlockMember(f, f.relative_path) for f in listed]
    s3.remove_object("landing", raw_key(pid, "gone.txt"))
    archive_id = f"openem-network/datasets/{pid}/datablocks/x_0.tar"

    with pytest.raises(FileMissing, match=r"'gone\.txt' is missing"):
        stream_datablock(
            s3,
            landing_bucket="landing",
            archival_bucket="archival",
            archive_id=archive_id,
            members=members,
            limits=limits().stream,
        )

    assert datablock_keys(s3, pid) == []


def test_a_glacier_object_is_restored_then_packed(s3: Minio, s3_extras: BaseClient) -> None:
    """GetObject on a cold object fails until restored; packing restores it first."""
    pid = new_pid()
    put_file(s3, pid, "cold.bin", b"frozen bytes", storage_class="GLACIER")
    put_file(s3, pid, "warm.bin", b"warm bytes")

    (block,) = pack_dataset(s3, s3_extras, BUCKETS, pid, limits())

    members = tar_members(s3, block.archive_id)
    assert members["cold.bin"][1] == b"frozen bytes"
    assert members["warm.bin"][1] == b"warm bytes"


def test_an_unsafe_member_path_is_a_user_error_naming_the_file(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """A key with a backslash below raw_files/ never becomes a tar member."""
    pid = new_pid()
    put_file(s3, pid, "ok.txt", b"ok")
    put_file(s3, pid, "dir\\evil.txt", b"evil")

    with pytest.raises(DatasetRejected) as caught:
        pack_dataset(s3, s3_extras, BUCKETS, pid, limits())

    assert caught.value.kind == "user"
    assert "'dir\\\\evil.txt'" in caught.value.reason
    assert datablock_keys(s3, pid) == []


def test_a_dataset_without_files_is_a_user_error(s3: Minio, s3_extras: BaseClient) -> None:
    """Nothing in the landing zone: no empty tar, a user failure."""
    pid = new_pid()

    with pytest.raises(DatasetRejected) as caught:
        pack_dataset(s3, s3_extras, BUCKETS, pid, limits())

    assert caught.value.kind == "user"
    assert "no files" in caught.value.reason


def test_packing_again_recreates_the_same_archive_ids_and_clears_stale_uploads(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """A redelivery rewrites the same keys; a crashed attempt's open upload is aborted."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"a" * 10)
    put_file(s3, pid, "b.txt", b"b" * 10)
    first = pack_dataset(s3, s3_extras, BUCKETS, pid, limits(target=10))
    create_multipart_upload(s3_extras, "archival", first[0].archive_id)

    second = pack_dataset(s3, s3_extras, BUCKETS, pid, limits(target=10))

    assert [b.archive_id for b in second] == [b.archive_id for b in first]
    assert [b.tar_sha256 for b in second] == [b.tar_sha256 for b in first]
    assert datablock_keys(s3, pid) == sorted(b.archive_id for b in first)
    assert open_uploads(s3_extras, pid) == []


class InMemoryResults:
    def __init__(self) -> None:
        self.events: dict[str, DatablocksCreated] = {}
        self.cleaned_records: dict[str, CleanedDataset] = {}

    async def get(self, pid: str) -> DatablocksCreated | None:
        return self.events.get(pid)

    async def put(self, event: DatablocksCreated) -> None:
        self.events[event.pid] = event

    async def cleaned(self, pid: str) -> CleanedDataset | None:
        return self.cleaned_records.get(pid)

    async def mark_cleaned(self, record: CleanedDataset) -> None:
        self.cleaned_records[record.pid] = record


async def test_a_finished_result_is_returned_again_instead_of_repacking(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """The second delivery finds the stored result and the datablocks: same event, no new tar."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    results = InMemoryResults()
    event = UploadFinished(
        occurred_at=datetime.now(UTC),
        pid=pid,
        owner_group="g",
        create_archiving_job=False,
        source="notification",
    )
    first = await pack_upload(event, s3, s3_extras, BUCKETS, limits(), results)
    s3.remove_object("landing", raw_key(pid, "a.txt"))  # a repack would now fail: no files

    second = await pack_upload(event, s3, s3_extras, BUCKETS, limits(), results)

    assert isinstance(first, DatablocksCreated)
    assert second == first


def finished(pid: str, owner_group: str = "g") -> UploadFinished:
    return UploadFinished(
        occurred_at=datetime.now(UTC),
        pid=pid,
        owner_group=owner_group,
        create_archiving_job=False,
        source="finalize",
    )


async def test_too_many_files_for_one_message_fail_as_system_before_packing(
    s3: Minio, s3_extras: BaseClient
) -> None:
    """30 files cannot be listed in a 6,000-byte message: a system failure, no tar, no result."""
    pid = new_pid()
    for n in range(30):
        put_file(s3, pid, f"frames/frame_{n:04d}.tif", b"x")
    results = InMemoryResults()

    outcome = await pack_upload(
        finished(pid), s3, s3_extras, BUCKETS, limits(), results, max_payload=6000
    )

    assert isinstance(outcome, DatasetPackingFailed)
    assert outcome.kind == "system"
    assert f"dataset {pid} has 30 files" in outcome.reason
    assert "6,000-byte message limit" in outcome.reason
    assert "takes at least" in outcome.reason  # refused from the listing, before packing
    assert datablock_keys(s3, pid) == []
    assert open_uploads(s3_extras, pid) == []
    assert results.events == {}


async def test_a_packed_result_too_large_to_publish_is_removed_and_fails_as_system(
    s3: Minio,
    s3_extras: BaseClient,
) -> None:
    """Files fit, but the whole event (a 5,000-character owner group) does not: tars removed."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    results = InMemoryResults()

    outcome = await pack_upload(
        finished(pid, owner_group="g" * 5000),
        s3,
        s3_extras,
        BUCKETS,
        limits(),
        results,
        max_payload=8192,
    )

    assert isinstance(outcome, DatasetPackingFailed)
    assert outcome.kind == "system"
    assert f"dataset {pid} has 1 files" in outcome.reason
    assert "8,192-byte message limit" in outcome.reason
    assert "takes at least" not in outcome.reason  # refused after packing, by exact size
    assert datablock_keys(s3, pid) == []
    assert results.events == {}


async def test_a_cleaned_dataset_is_not_packed_again(s3: Minio, s3_extras: BaseClient) -> None:
    """After archiving and cleanup, upload.finished packs nothing even if files are back."""
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    results = InMemoryResults()
    record = CleanedDataset(
        pid=pid,
        job_id="job-1",
        archived_at=datetime(2025, 1, 2, tzinfo=UTC),
        archive_ids=(f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar",),
    )
    await results.mark_cleaned(record)

    outcome = await pack_upload(finished(pid), s3, s3_extras, BUCKETS, limits(), results)

    assert outcome == AlreadyCleaned(record)
    assert datablock_keys(s3, pid) == []
    assert results.events == {}
