"""A verified re-copy replaces the copy at the archive id, also across a restart (real KV).

The flow is driven directly (`record_verification`) with the events it emits captured, so a
redelivery after a crash can be staged exactly.
"""

import io
import uuid
from datetime import UTC, datetime

from minio import Minio

from contracts import kv
from contracts.events import Event, LtsVerified
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from runtime.kvstore import open_bucket
from runtime.lts import PosixLts, copy_id
from runtime.objectstore import BucketReader
from services.ltsmover.jobflow import JobFlow, record_verification
from services.ltsmover.jobstate import DatablockRecords, JobStore
from services.ltsmover.moving import ArchiveTransfer, MovePolicy
from tests.ltsmover.service_fixtures import record_datablocks

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def flow_with(js, s3: Minio, root, emitted: list[tuple[str, Event]]) -> JobFlow:
    async def emit(subject: str, event: Event) -> None:
        emitted.append((subject, event))

    return JobFlow(
        jobs=JobStore(await open_bucket(js, kv.JOBS)),
        datablocks=DatablockRecords(await open_bucket(js, kv.DATABLOCKS)),
        transfer=ArchiveTransfer(
            source=BucketReader(s3, "archival", "archival"),
            lts=PosixLts(root),
            policy=MovePolicy(0.0, 1.0, 0.05, 1),
        ),
        emit=emit,
        max_parallel_datasets=1,
        max_copy_attempts=3,
        clock=lambda: NOW,
    )


async def job_moved_at(
    js, job_id: str, pid: str, archive_id: str, size: int, *, replacing: bool
) -> None:
    """The record of a job whose datablock's re-copy (attempt 1) awaits its verdict."""
    block = DatablockProgress(
        archive_id=archive_id, packed_size=size, state="moved", attempt=1, replacing=replacing
    )
    record = JobRecord(
        job_id=job_id,
        job_type="archive",
        scicat_api="v4",
        status="inProgress",
        datasets={
            pid: DatasetProgress(
                pid=pid, state="inProgress", started_at=NOW, datablocks={archive_id: block}
            )
        },
        created_at=NOW,
        started_at=NOW,
    )
    await (await open_bucket(js, kv.JOBS)).put(kv.id_key(job_id), record.model_dump_json().encode())


def verdict(job_id: str, pid: str, archive_id: str) -> LtsVerified:
    return LtsVerified(
        occurred_at=NOW,
        job_id=job_id,
        job_type="archive",
        pid=pid,
        archive_id=archive_id,
        location="for people",
        attempt=1,
        ok=True,
    )


async def packed(js, s3: Minio, pid: str) -> tuple[str, bytes]:
    def store(archive_id: str, raw: bytes) -> None:
        s3.put_object("archival", archive_id, io.BytesIO(raw), len(raw))

    (raw,) = await record_datablocks(js, pid, [{"file.dat": b"r" * 9000}], store)
    return f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar", raw


async def test_a_redelivered_verdict_after_the_replacement_verifies_the_block(world) -> None:
    """The record says the re-copy was being put in place and it is gone: it was, so the block
    is verified and the dataset archived, the copy in place untouched."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/resumed-{tag}", f"job-{tag}"
    archive_id, raw = await packed(js, s3, pid)
    PosixLts(root).write(archive_id, io.BytesIO(raw), len(raw))  # promoted before the crash
    await job_moved_at(js, job_id, pid, archive_id, len(raw), replacing=True)
    emitted: list[tuple[str, Event]] = []

    await record_verification(
        verdict(job_id, pid, archive_id), await flow_with(js, s3, root, emitted)
    )
    record = await JobStore(await open_bucket(js, kv.JOBS)).get(job_id)

    assert record is not None
    assert record.datasets[pid].state == "succeeded"
    assert record.datasets[pid].datablocks[archive_id].state == "verified"
    assert [s for s, _ in emitted] == ["dataset.lifecycle", "dataset.archived", "job.status"]
    assert (root / archive_id).read_bytes() == raw


async def test_a_verified_recopy_gone_before_its_replacement_is_copied_again(world) -> None:
    """No record of a replacement and no re-copy: the old copy stays, a new re-copy is written
    beside it and announced for verification; the block is not verified."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/vanished-{tag}", f"job-{tag}"
    archive_id, raw = await packed(js, s3, pid)
    PosixLts(root).write(archive_id, io.BytesIO(b"old bad copy"), 12)
    await job_moved_at(js, job_id, pid, archive_id, len(raw), replacing=False)
    emitted: list[tuple[str, Event]] = []

    await record_verification(
        verdict(job_id, pid, archive_id), await flow_with(js, s3, root, emitted)
    )
    record = await JobStore(await open_bucket(js, kv.JOBS)).get(job_id)

    assert record is not None
    block = record.datasets[pid].datablocks[archive_id]
    assert (block.state, block.attempt) == ("moved", 2)
    assert [s for s, _ in emitted] == ["lts.moved"]
    assert emitted[0][1].location == str(root / copy_id(archive_id, job_id, 2))  # type: ignore[attr-defined]
    assert (root / archive_id).read_bytes() == b"old bad copy"
    assert (root / copy_id(archive_id, job_id, 2)).read_bytes() == raw
