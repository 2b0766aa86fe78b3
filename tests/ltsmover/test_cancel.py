"""Cancelling a job in the ltsmover: work stops at a safe point, LTS keeps nothing of the job.

ltsmover and verifier run in this process on the real nats-server and moto S3,
with a posix LTS whose writes are slowed down, so a test can cancel while a
datablock is being copied. The test plays the gateway: it records who cancelled
in the job's record (compare-and-set), then announces `job.cancel_requested`.
"""

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from minio import Minio
from nats.js import JetStreamContext

from contracts import kv, subjects
from contracts.events import DatablocksCreated, JobCancelRequested, LtsMoved
from contracts.jobs import JobRecord
from runtime.kvstore import KvRecords, open_bucket
from runtime.lts import PosixLts, Readable
from runtime.publishing import publish_event
from runtime.s3_extras import list_multipart_uploads
from services.ltsmover.app import create_app as create_ltsmover
from services.verifier.app import create_app as create_verifier
from tests.ltsmover.service_fixtures import (
    events,
    finished,
    job_record,
    job_request,
    mover_settings,
    record_datablocks,
    running,
    verifier_settings,
)
from tests.polling import eventually

CANCELLED_AT = datetime(2026, 12, 6, 5, 12, tzinfo=UTC)
MiB = 1024**2


class SlowReader:
    """Hands on at most 256 KiB per read, after a pause: a copy of a few MiB takes seconds."""

    def __init__(self, source: Readable) -> None:
        self._source = source

    def read(self, size: int = -1, /) -> bytes:
        time.sleep(0.05)
        return self._source.read(256 * 1024 if size < 0 else min(size, 256 * 1024))


class SlowLts(PosixLts):
    """A posix LTS whose writes crawl (a slow tape share)."""

    def write(self, archive_id: str, source: Readable, size: int, *, staged: bool = False) -> None:
        super().write(archive_id, SlowReader(source), size, staged=staged)


async def pack(js: JetStreamContext, s3: Minio, pid: str, contents: list[bytes]) -> None:
    def store(archive_id: str, raw: bytes) -> None:
        s3.put_object("archival", archive_id, io.BytesIO(raw), len(raw))

    await record_datablocks(js, pid, [{f"file{n}.dat": d} for n, d in enumerate(contents)], store)


async def ask_to_cancel(js: JetStreamContext, job_id: str, by: str) -> None:
    """What the gateway does: who and when into the record, then the announcement."""
    records = KvRecords(await open_bucket(js, kv.JOBS), JobRecord)

    def ask(record: JobRecord) -> None:
        record.cancel_requested_by = by
        record.cancel_requested_at = CANCELLED_AT

    await records.change(kv.id_key(job_id), ask)
    request = JobCancelRequested(occurred_at=CANCELLED_AT, job_id=job_id, requested_by=by)
    await publish_event(js, subjects.JOB_CANCEL_REQUESTED, request, msg_id=request.dedup_id())


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_a_job_cancelled_mid_copy_leaves_no_partial_file_in_lts(
    world, nats_server_process, s3_server
) -> None:
    """Cancel while a datablock is being copied: the copy stops, LTS holds no file of the job,
    the archival bucket still holds the datablocks, the job ends finishedUnsuccessful."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/cancel-{tag}", f"job-{tag}"
    await pack(js, s3, pid, [b"a" * (6 * MiB), b"b" * (6 * MiB)])
    url = nats_server_process.url
    settings = mover_settings(url, s3_server, root, cancel_poll_s=0.1)

    async with (
        running(create_ltsmover(settings, lts=SlowLts(root))),
        running(create_verifier(verifier_settings(url, s3_server, root))),
    ):
        job = job_request("archive", job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())

        async def copying_with_a_partial_file() -> bool:
            record = await job_record(js, job_id)
            copying = record is not None and any(
                b.state == "copying" for b in record.datasets[pid].datablocks.values()
            )
            return copying and any(name.endswith(".part") for name in files_below(root))

        await eventually(copying_with_a_partial_file, "a datablock is being copied", timeout_s=15.0)
        stopped_at = asyncio.get_running_loop().time()
        await ask_to_cancel(js, job_id, "alice")
        record = await finished(js, job_id)
        took = asyncio.get_running_loop().time() - stopped_at
        await asyncio.sleep(0.5)  # nothing of a stopped copy turns up later
    log = await events(js, job_id)

    assert files_below(root) == []
    assert took < 5.0
    assert record.status == "finishedUnsuccessful"
    assert record.status_message == (
        "Cancelled by alice at 2026-12-06T05:12:00Z; 0 of 1 dataset(s) archived"
    )
    assert record.datasets[pid].state == "failed"
    assert record.datasets[pid].error == "Cancelled by alice at 2026-12-06T05:12:00Z"
    slug = pid.replace("/", "-")
    archival = sorted(
        o.object_name
        for o in s3.list_objects(
            "archival", prefix=f"openem-network/datasets/{pid}/", recursive=True
        )
    )
    assert archival == [
        f"openem-network/datasets/{pid}/datablocks/{slug}_0.tar",
        f"openem-network/datasets/{pid}/datablocks/{slug}_1.tar",
    ]
    decided = [b["lifecycle"] for s, b in log if s == "dataset.lifecycle"][-1]
    assert {k: v for k, v in decided.items() if v is not None} == {
        "archiveStatusMessage": "scheduleArchiveJobFailed",
        "archiveReturnMessage": {"message": "Cancelled by alice at 2026-12-06T05:12:00Z"},
        "archivable": True,
    }
    statuses = [b["status_code"] for s, b in log if s == "job.status"]
    assert statuses == ["inProgress", "finishedUnsuccessful"]
    assert [s for s, _ in log].count("job.cancel_requested") == 1


async def test_a_job_cancelled_after_a_copy_was_written_withdraws_the_copy_it_wrote(
    world, nats_server_process, s3_server
) -> None:
    """A copy this job wrote whole, of a dataset cancelled before it verified, goes too;
    a job whose record names no canceller is not stopped by a forged cancel event, and a
    cancel handled again announces nothing new."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/withdraw-{tag}", f"job-{tag}"
    await pack(js, s3, pid, [b"c" * 4000])
    url = nats_server_process.url
    settings = mover_settings(url, s3_server, root, cancel_poll_s=0.1)

    async with running(create_ltsmover(settings)):  # no verifier: the copy stays unverified
        job = job_request("archive", job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())

        async def moved() -> bool:
            record = await job_record(js, job_id)
            blocks = record.datasets[pid].datablocks.values() if record else []
            return any(b.state == "moved" for b in blocks)

        await eventually(moved, "the datablock is copied, awaiting its check", timeout_s=15.0)
        copied = files_below(root)
        forged = JobCancelRequested(occurred_at=CANCELLED_AT, job_id=job_id, requested_by="eve")
        await publish_event(js, subjects.JOB_CANCEL_REQUESTED, forged, msg_id="forged-1")
        await asyncio.sleep(0.5)
        untouched = await job_record(js, job_id)
        await ask_to_cancel(js, job_id, "alice")
        record = await finished(js, job_id)
        told = await events(js, job_id)
        again = JobCancelRequested(occurred_at=CANCELLED_AT, job_id=job_id, requested_by="alice")
        await publish_event(js, subjects.JOB_CANCEL_REQUESTED, again, msg_id="redelivered-1")
        await asyncio.sleep(0.5)
        retold = await events(js, job_id)

    assert [s for s, _ in retold if s != "job.cancel_requested"] == [
        s for s, _ in told if s != "job.cancel_requested"
    ]
    slug = pid.replace("/", "-")
    assert copied == [f"openem-network/datasets/{pid}/datablocks/{slug}_0.tar"]
    assert untouched is not None
    assert untouched.status == "inProgress"
    assert files_below(root) == []
    assert record.status == "finishedUnsuccessful"
    assert record.datasets[pid].error == "Cancelled by alice at 2026-12-06T05:12:00Z"


async def test_the_verifier_does_not_read_a_copy_of_a_cancelled_job(
    world, nats_server_process, s3_server
) -> None:
    """An `lts.moved` of a job whose record says it was cancelled gets no verdict; the same
    copy announced for a job nobody cancelled does."""
    js, _, root = world
    tag = uuid.uuid4().hex[:8]
    pid, cancelled, running_job = f"20.500/verify-{tag}", f"gone-{tag}", f"kept-{tag}"

    def store(archive_id: str, raw: bytes) -> None:
        PosixLts(root).write(archive_id, io.BytesIO(raw), len(raw))

    await record_datablocks(js, pid, [{"file0.dat": b"v" * 3000}], store)
    entry = await (await open_bucket(js, kv.DATABLOCKS)).get(kv.id_key(pid))
    block = DatablocksCreated.model_validate_json(entry.value).datablocks[0]
    records = KvRecords(await open_bucket(js, kv.JOBS), JobRecord)
    for job_id in (cancelled, running_job):
        await records.create(
            kv.id_key(job_id), JobRecord.submitted(job_request("archive", job_id, pid))
        )
    await ask_to_cancel(js, cancelled, "alice")

    async with running(
        create_verifier(verifier_settings(nats_server_process.url, s3_server, root))
    ):
        for job_id in (cancelled, running_job):
            moved = LtsMoved(
                occurred_at=CANCELLED_AT,
                job_id=job_id,
                job_type="archive",
                pid=pid,
                datablock=block,
                location=str(root / block.archive_id),
                attempt=0,
            )
            await publish_event(js, subjects.LTS_MOVED, moved, msg_id=moved.dedup_id())

        async def verdict_for_the_running_job() -> bool:
            return any(s == "lts.verified" for s, _ in await events(js, running_job))

        await eventually(verdict_for_the_running_job, "a verdict", timeout_s=15.0)
        await asyncio.sleep(0.3)

    assert [s for s, _ in await events(js, cancelled) if s == "lts.verified"] == []


class SlowReadLts(PosixLts):
    """A posix LTS whose copies read back slowly (a tape drive streaming)."""

    @contextlib.contextmanager
    def open_read(self, archive_id: str) -> Iterator[Readable]:
        with super().open_read(archive_id) as stream:
            yield SlowReader(stream)


async def test_a_retrieve_cancelled_mid_upload_leaves_nothing_in_the_retrieval_bucket(
    world, nats_server_process, s3_server, s3_extras
) -> None:
    """Cancelled while a datablock streams into the retrieval bucket in parts: the multipart
    upload is aborted, no object of the dataset is there, the job ends finishedUnsuccessful."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/unretrieve-{tag}", f"job-{tag}"

    def store(archive_id: str, raw: bytes) -> None:
        PosixLts(root).write(archive_id, io.BytesIO(raw), len(raw))

    await record_datablocks(js, pid, [{"big.dat": b"r" * (40 * MiB)}], store)
    prefix = f"openem-network/datasets/{pid}/"
    settings = mover_settings(nats_server_process.url, s3_server, root, cancel_poll_s=0.1)

    async with running(create_ltsmover(settings, lts=SlowReadLts(root))):
        job = job_request("retrieve", job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_RETRIEVE, job, msg_id=job.dedup_id())

        async def uploading() -> bool:
            return bool(list(list_multipart_uploads(s3_extras, "retrieval", prefix)))

        await eventually(uploading, "a part of the datablock was uploaded", timeout_s=20.0)
        await ask_to_cancel(js, job_id, "alice")
        record = await finished(js, job_id)
        await asyncio.sleep(0.5)

    assert list(list_multipart_uploads(s3_extras, "retrieval", prefix)) == []
    assert list(s3.list_objects("retrieval", prefix=prefix, recursive=True)) == []
    assert record.status == "finishedUnsuccessful"
    assert record.datasets[pid].error == "Cancelled by alice at 2026-12-06T05:12:00Z"
