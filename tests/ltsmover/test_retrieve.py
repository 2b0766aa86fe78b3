"""Retrieve jobs end to end in this process: ltsmover and verifier on real nats-server and moto."""

import asyncio
import base64
import io
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from minio import Minio
from nats.js import JetStreamContext

from contracts import kv, subjects
from contracts.events import JobRequested
from contracts.retrievals import RetrievalCopy
from runtime.kvstore import open_bucket
from runtime.lts import LtsBackend, PosixLts, S3ColdLts
from runtime.publishing import publish_event
from services.ltsmover.app import create_app as create_ltsmover
from services.ltsmover.retrieval_bucket import RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies
from services.ltsmover.sweeping import sweep_expired
from services.scicat_sync.job_results import RetrievalLinks, retrieve_result
from services.scicat_sync.records import open_records
from services.verifier.app import create_app as create_verifier
from tests.ltsmover.service_fixtures import (
    build_tar,
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

FILES = {
    "raw/a.dat": b"A" * 3000,
    "raw/sub dir/b.dat": b"B" * 70000,
    "it's.txt": b"quoted name\n",
}


async def archived(
    js: JetStreamContext, lts: LtsBackend, pid: str, blocks: list[dict[str, bytes]]
) -> list[bytes]:
    """Tars in LTS and their record in KV, as an archive job leaves them."""

    def store(archive_id: str, raw: bytes) -> None:
        lts.write(archive_id, io.BytesIO(raw), len(raw))

    return await record_datablocks(js, pid, blocks, store)


def retrieve_job(job_id: str, *pids: str) -> JobRequested:
    return job_request("retrieve", job_id, *pids)


async def request(js: JetStreamContext, job: JobRequested) -> None:
    await publish_event(js, subjects.JOB_REQUESTED_RETRIEVE, job, msg_id=job.dedup_id())


async def final_result(js: JetStreamContext, s3: Minio, job_id: str) -> dict:
    """The job's result as scicat_sync builds it, from the records the ltsmover left."""
    records = await open_records(js)
    record = await records.job(job_id)
    assert record is not None
    links = RetrievalLinks(s3, "retrieval")
    return await retrieve_result(record, records, links, datetime.now(UTC))


def retrieved_keys(s3: Minio, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/retrieved/"
    return [o.object_name for o in s3.list_objects("retrieval", prefix=prefix, recursive=True)]


@asynccontextmanager
async def services(url: str, s3_server, root: Path, lts: LtsBackend, **extra):
    async with (
        running(create_ltsmover(mover_settings(url, s3_server, root, **extra), lts=lts)),
        running(create_verifier(verifier_settings(url, s3_server, root))),
    ):
        yield


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


@pytest.mark.parametrize("backend", ["posix", "s3"])
async def test_a_retrieve_job_offers_urls_that_download_the_archived_tars(
    world, nats_server_process, s3_server, s3_extras, backend
) -> None:
    """Both backends: finishedSuccessful, byte-identical downloads, lifecycle in order."""
    js, s3, root = world
    lts = PosixLts(root) if backend == "posix" else S3ColdLts(s3, s3_extras, "lts", "GLACIER")
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/ret-{tag}", f"job-{tag}"
    raws = await archived(js, lts, pid, [FILES, {"second.bin": bytes(range(256)) * 300}])

    async with services(nats_server_process.url, s3_server, root, lts):
        await request(js, retrieve_job(job_id, pid))
        record = await finished(js, job_id)
        await asyncio.sleep(0.1)
    log = await events(js, job_id)
    result = await final_result(js, s3, job_id)

    assert record.status == "finishedSuccessful"
    assert record.status_message == "1 of 1 dataset(s) retrieved"
    assert [e["name"] for e in result["result"]] == [
        f"20.500-ret-{tag}_0.tar",
        f"20.500-ret-{tag}_1.tar",
    ]
    async with httpx.AsyncClient() as client:
        for entry, raw in zip(result["result"], raws, strict=True):
            assert entry["datasetId"] == pid
            assert entry["size"] == len(raw)
            response = await client.get(entry["url"])
            assert response.status_code == 200
            assert response.content == raw
    lifecycles = [b["lifecycle"] for s, b in log if s == "dataset.lifecycle"]
    assert [{k: v for k, v in lc.items() if v is not None} for lc in lifecycles] == [
        {"retrieveStatusMessage": "started"},
        {"retrieveStatusMessage": "datasetRetrieved", "retrieveIntegrityCheck": True},
    ]
    assert [b["status_code"] for s, b in log if s == "job.status"] == [
        "inProgress",
        "finishedSuccessful",
    ]
    assert sorted((b["location"], b["ok"]) for s, b in log if s == "lts.verified") == [
        (f"openem-network/datasets/{pid}/retrieved/20.500-ret-{tag}_0.tar", True),
        (f"openem-network/datasets/{pid}/retrieved/20.500-ret-{tag}_1.tar", True),
    ]


async def test_the_download_script_reproduces_the_dataset_and_catches_a_changed_tar(
    world, nats_server_process, s3_server, tmp_path: Path
) -> None:
    """bash runs the job's script: exit 0 with identical files; non-zero once a tar changed."""
    js, s3, root = world
    lts = PosixLts(root)
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/script-{tag}", f"job-{tag}"
    await archived(js, lts, pid, [FILES])

    async with services(nats_server_process.url, s3_server, root, lts):
        await request(js, retrieve_job(job_id, pid))
        record = await finished(js, job_id)
    result = await final_result(js, s3, job_id)
    script = tmp_path / "retrieve.sh"
    script.write_bytes(base64.b64decode(result["downloadScript"]))

    good = subprocess.run(
        ["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=60
    )
    changed_raw, _ = build_tar({**FILES, "raw/a.dat": b"A" * 2999 + b"X"})
    key = f"openem-network/datasets/{pid}/retrieved/20.500-script-{tag}_0.tar"
    s3.put_object("retrieval", key, io.BytesIO(changed_raw), len(changed_raw))
    bad = subprocess.run(
        ["bash", str(script), str(tmp_path / "again")], capture_output=True, text=True, timeout=60
    )

    assert record.status == "finishedSuccessful"
    assert good.returncode == 0, good.stderr
    for name, data in FILES.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert "all 3 file(s) verified" in good.stdout
    assert bad.returncode == 1
    assert f"FAILED: 20.500-script-{tag}_0.tar has SHA-256" in bad.stderr


async def test_a_tape_offline_for_a_second_delays_the_retrieval_but_it_completes(
    world, nats_server_process, s3_server
) -> None:
    """Reads fail with EAGAIN for ~1 s; polled every 0.1 s, the job then succeeds."""
    js, _, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/tape-{tag}", f"job-{tag}"
    await archived(js, PosixLts(root), pid, [FILES])
    tape = OfflineTape(time.monotonic() + 1.0)
    lts = PosixLts(root, opener=tape)

    async with services(nats_server_process.url, s3_server, root, lts):
        started = time.monotonic()
        tape.online_at = started + 1.0  # a second from now, however long start-up took
        await request(js, retrieve_job(job_id, pid))

        async def recalling() -> bool:
            record = await job_record(js, job_id)
            return record is not None and record.datasets[pid].state == "waitingForRecall"

        await eventually(
            recalling, f"{pid} waiting for the tape recall", timeout_s=15.0, interval_s=0.05
        )
        waiting = await job_record(js, job_id)
        record = await finished(js, job_id)

    assert waiting is not None
    assert (waiting.datasets[pid].message or "").startswith(
        f"Waiting for 20.500-tape-{tag}_0.tar to be recalled from LTS"
    )
    assert record.status == "finishedSuccessful"
    assert time.monotonic() - started >= 1.0
    assert tape.attempts >= 5


async def test_a_tape_offline_past_the_timeout_fails_the_dataset_cleanly(
    world, nats_server_process, s3_server
) -> None:
    """Past recall_timeout_s: datasetRetrievalFailed with the reason, job finishedUnsuccessful."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/gone-{tag}", f"job-{tag}"
    await archived(js, PosixLts(root), pid, [FILES])
    lts = PosixLts(root, opener=OfflineTape(time.monotonic() + 600))

    async with services(nats_server_process.url, s3_server, root, lts, recall_timeout_s=0.5):
        await request(js, retrieve_job(job_id, pid))
        record = await finished(js, job_id)
    log = await events(js, job_id)
    result = await final_result(js, s3, job_id)

    assert record.status == "finishedUnsuccessful"
    assert record.datasets[pid].state == "failed"
    failed = [b["lifecycle"] for s, b in log if s == "dataset.lifecycle"][-1]
    assert failed["retrieveStatusMessage"] == "datasetRetrievalFailed"
    assert "was not readable within" in failed["retrieveReturnMessage"]["message"]
    assert result["result"] == []
    assert retrieved_keys(s3, pid) == []


async def test_a_corrupted_lts_tar_is_caught_and_no_url_is_published(
    world, nats_server_process, s3_server
) -> None:
    """A flipped byte in LTS fails every check; the copies go and the result stays empty."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/rot-{tag}", f"job-{tag}"
    lts = PosixLts(root)
    await archived(js, lts, pid, [FILES])
    copy = root / f"openem-network/datasets/{pid}/datablocks/20.500-rot-{tag}_0.tar"
    corrupted = bytearray(copy.read_bytes())
    corrupted[corrupted.index(b"B" * 100) + 7] ^= 0xFF
    copy.write_bytes(bytes(corrupted))

    async with services(nats_server_process.url, s3_server, root, lts, max_copy_attempts=2):
        await request(js, retrieve_job(job_id, pid))
        record = await finished(js, job_id)
    log = await events(js, job_id)
    result = await final_result(js, s3, job_id)

    assert record.status == "finishedUnsuccessful"
    assert [(b["attempt"], b["ok"]) for s, b in log if s == "lts.verified"] == [
        (0, False),
        (1, False),
    ]
    assert "member checksum mismatch: raw/sub dir/b.dat" in (record.datasets[pid].error or "")
    assert result["result"] == []
    assert retrieved_keys(s3, pid) == []
    lifecycle = [b["lifecycle"] for s, b in log if s == "dataset.lifecycle"][-1]
    assert lifecycle["retrieveStatusMessage"] == "datasetRetrievalFailed"


async def test_two_retrieve_jobs_for_one_dataset_make_one_copy_and_both_get_urls(
    world, nats_server_process, s3_server
) -> None:
    """Jobs published back to back: one lts.moved in all, both jobs succeed with working URLs."""
    js, s3, root = world
    lts = PosixLts(root)
    tag = uuid.uuid4().hex[:8]
    pid, first, second = f"20.500/both-{tag}", f"job-a-{tag}", f"job-b-{tag}"
    (raw,) = await archived(js, lts, pid, [FILES])

    async with services(nats_server_process.url, s3_server, root, lts):
        await request(js, retrieve_job(first, pid))
        await request(js, retrieve_job(second, pid))
        records = [await finished(js, first), await finished(js, second)]
    logs = [await events(js, first), await events(js, second)]
    results = [await final_result(js, s3, first), await final_result(js, s3, second)]

    assert [r.status for r in records] == ["finishedSuccessful", "finishedSuccessful"]
    assert sum(1 for log in logs for s, _ in log if s == "lts.moved") == 1
    assert retrieved_keys(s3, pid) == [
        f"openem-network/datasets/{pid}/retrieved/20.500-both-{tag}_0.tar"
    ]
    async with httpx.AsyncClient() as client:
        for result in results:
            (entry,) = result["result"]
            assert (await client.get(entry["url"])).content == raw


async def test_a_copy_failing_every_check_fails_the_job_that_waited_for_it_too(
    world, nats_server_process, s3_server
) -> None:
    """The second job waits for the first's copy; after its last failed check both datasets fail."""
    js, s3, root = world
    lts = PosixLts(root)
    tag = uuid.uuid4().hex[:8]
    pid, first, second = f"20.500/shared-{tag}", f"job-a-{tag}", f"job-b-{tag}"
    await archived(js, lts, pid, [FILES])
    archive_id = f"openem-network/datasets/{pid}/datablocks/20.500-shared-{tag}_0.tar"
    tar = root / archive_id
    corrupted = bytearray(tar.read_bytes())
    corrupted[corrupted.index(b"B" * 100) + 7] ^= 0xFF
    tar.write_bytes(bytes(corrupted))
    url = nats_server_process.url
    settings = mover_settings(url, s3_server, root, max_copy_attempts=2)

    async with running(create_ltsmover(settings, lts=lts)):
        await request(js, retrieve_job(first, pid))

        async def moved() -> bool:
            return any(s == "lts.moved" for s, _ in await events(js, first))

        async def waiting() -> bool:
            record = await job_record(js, second)
            blocks = record.datasets[pid].datablocks if record else {}
            return any(b.state == "copying" and not b.copied for b in blocks.values())

        await eventually(moved, "the first copy is being made", timeout_s=15.0, interval_s=0.05)
        await request(js, retrieve_job(second, pid))
        await eventually(waiting, "the second job waits", timeout_s=15.0, interval_s=0.05)
        async with running(create_verifier(verifier_settings(url, s3_server, root))):
            records = [await finished(js, first), await finished(js, second)]
    first_log = await events(js, first)
    copies = RetrievalCopies(await open_bucket(js, kv.RETRIEVALS))

    assert [r.status for r in records] == ["finishedUnsuccessful", "finishedUnsuccessful"]
    assert [(b["attempt"], b["ok"]) for s, b in first_log if s == "lts.verified"] == [
        (0, False),
        (1, False),
    ]
    for record in records:
        error = record.datasets[pid].error or ""
        assert error.startswith(f"Datablock {archive_id} failed verification after retrieval 2")
    assert [s for s, _ in await events(js, second)].count("lts.moved") == 0
    assert retrieved_keys(s3, pid) == []
    assert await copies.get(archive_id) is None


async def test_the_sweeper_removes_an_expired_copy_and_keeps_a_fresh_one(world) -> None:
    """Past expires_at record and object go; a copy valid for a day stays."""
    js, s3, _ = world
    copies = RetrievalCopies(await open_bucket(js, kv.RETRIEVALS))
    bucket = RetrievalBucket(s3, "retrieval")
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    for name, expires_at in (("old", now - timedelta(minutes=1)), ("new", now + timedelta(days=1))):
        key = f"openem-network/datasets/20.500/{name}-{tag}/retrieved/{name}.tar"
        s3.put_object("retrieval", key, io.BytesIO(b"tar"), 3)
        record = RetrievalCopy(
            archive_id=f"{name}-{tag}.tar",
            pid=f"20.500/{name}-{tag}",
            key=key,
            state="verified",
            job_id=f"job-{tag}",
            claimed_at=now - timedelta(days=7),
            verified_at=now - timedelta(days=7),
            expires_at=expires_at,
        )
        await copies.kv.put(kv.id_key(record.archive_id), record.model_dump_json().encode())

    removed = await sweep_expired(copies, bucket, now=now, orphan_age=timedelta(days=7))

    assert removed == [f"openem-network/datasets/20.500/old-{tag}/retrieved/old.tar"]
    assert retrieved_keys(s3, f"20.500/old-{tag}") == []
    assert retrieved_keys(s3, f"20.500/new-{tag}") == [
        f"openem-network/datasets/20.500/new-{tag}/retrieved/new.tar"
    ]
    assert await copies.get(f"old-{tag}.tar") is None
    assert await copies.get(f"new-{tag}.tar") is not None
