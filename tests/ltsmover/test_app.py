"""ltsmover and verifier in this process, on the real nats-server and moto S3, posix LTS."""

import asyncio
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from minio import Minio
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from contracts import kv, subjects
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    JobDataset,
    JobRequested,
)
from contracts.jobs import JobRecord
from runtime.bus import publish_event
from runtime.provisioning import provision
from runtime.settings import LtsSettings, NatsSettings, S3Settings
from services.ltsmover.app import create_app as create_ltsmover
from services.ltsmover.settings import LtsMoverSettings
from services.verifier.app import create_app as create_verifier
from services.verifier.settings import VerifierSettings


def s3_settings(s3_server) -> S3Settings:
    return S3Settings(
        endpoint=s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )


@asynccontextmanager
async def running(app) -> AsyncIterator[None]:
    await app.start()
    try:
        yield
    finally:
        await app.stop()


async def open_kv(js: JetStreamContext, bucket: str):
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket))


async def pack(js: JetStreamContext, s3: Minio, pid: str, contents: list[bytes]) -> list[bytes]:
    """Put real tars in the archival bucket and their record in KV, as the datablocker does."""
    slug = pid.replace("/", "-")
    blocks, raws = [], []
    for n, data in enumerate(contents):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"file{n}.dat")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        raw = buffer.getvalue()
        archive_id = f"openem-network/datasets/{pid}/datablocks/{slug}_{n}.tar"
        s3.put_object("archival", archive_id, io.BytesIO(raw), len(raw))
        blocks.append(
            Datablock(
                archive_id=archive_id,
                size=len(data),
                packed_size=len(raw),
                tar_sha256=hashlib.sha256(raw).hexdigest(),
                data_file_list=(
                    DataFile(
                        path=f"file{n}.dat",
                        size=len(data),
                        time=datetime.now(UTC),
                        chk=hashlib.sha256(data).hexdigest(),
                    ),
                ),
            )
        )
        raws.append(raw)
    created = DatablocksCreated(
        occurred_at=datetime.now(UTC),
        pid=pid,
        datablocks=tuple(blocks),
        create_archiving_job=False,
        owner_group="group1",
    )
    bucket = await open_kv(js, kv.DATABLOCKS)
    await bucket.put(kv.id_key(pid), created.model_dump_json().encode())
    return raws


def archive_job(job_id: str, *pids: str) -> JobRequested:
    return JobRequested(
        occurred_at=datetime.now(UTC),
        job_id=job_id,
        job_type="archive",
        datasets=tuple(JobDataset(pid=p) for p in pids),
        scicat_api="v4",
    )


async def job_record(js: JetStreamContext, job_id: str) -> JobRecord | None:
    bucket = await open_kv(js, kv.JOBS)
    try:
        entry = await bucket.get(kv.id_key(job_id))
    except KeyNotFoundError:
        return None
    return JobRecord.model_validate_json(entry.value)


async def until(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


async def finished(js: JetStreamContext, job_id: str) -> JobRecord:
    async def done() -> bool:
        record = await job_record(js, job_id)
        return record is not None and record.finished

    await until(done)
    record = await job_record(js, job_id)
    assert record is not None
    return record


async def events(js: JetStreamContext, job_id: str) -> list[tuple[str, dict]]:
    """(subject, body) of the ARCHIVER stream's messages about one job, in order."""
    info = await js.stream_info("ARCHIVER")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("ARCHIVER", seq)
        body = json.loads(raw.data)
        if body.get("job_id") == job_id:
            found.append((raw.subject, body))
    return found


@pytest.fixture
async def world(clean_js: JetStreamContext, s3_server, tmp_path: Path):
    await provision(clean_js)
    s3 = Minio(
        s3_server.endpoint.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    root = tmp_path / "lts"
    root.mkdir()
    return clean_js, s3, root


def mover_settings(nats_url: str, s3_server, root: Path) -> LtsMoverSettings:
    return LtsMoverSettings(
        nats=NatsSettings(url=nats_url),
        s3=s3_settings(s3_server),
        lts=LtsSettings(backend="posix", root=root),
        min_free_percent=0,
        free_space_poll_s=0.05,
    )


def verifier_settings(nats_url: str, s3_server, root: Path) -> VerifierSettings:
    return VerifierSettings(
        nats=NatsSettings(url=nats_url),
        s3=s3_settings(s3_server),
        lts=LtsSettings(backend="posix", root=root),
        recall_poll_s=0.05,
        recall_timeout_s=2.0,
    )


async def test_a_job_with_one_unpacked_dataset_ends_with_dataset_errors(
    world, nats_server_process, s3_server
) -> None:
    """The packed dataset is archived byte-identical; the unpacked one fails as a user error."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    good, bad, job_id = f"20.500/good-{tag}", f"20.500/bad-{tag}", f"job-{tag}"
    raws = await pack(js, s3, good, [b"a" * 3000, b"b" * 90000])
    url = nats_server_process.url

    async with (
        running(create_ltsmover(mover_settings(url, s3_server, root))),
        running(create_verifier(verifier_settings(url, s3_server, root))),
    ):
        job = archive_job(job_id, good, bad)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())
        record = await finished(js, job_id)
        await asyncio.sleep(0.2)
    log = await events(js, job_id)

    assert record.status == "finishedWithDatasetErrors"
    assert record.datasets[good].state == "succeeded"
    assert record.datasets[bad].state == "failed"
    assert record.datasets[bad].error_kind == "user"
    slug = good.replace("/", "-")
    for n, raw in enumerate(raws):
        copy = root / f"openem-network/datasets/{good}/datablocks/{slug}_{n}.tar"
        assert copy.read_bytes() == raw
    lifecycles = {
        (body["pid"], body["lifecycle"].get("archiveStatusMessage")): {
            k: v for k, v in body["lifecycle"].items() if v is not None
        }
        for subject, body in log
        if subject == "dataset.lifecycle"
    }
    assert lifecycles[(good, "started")] == {"archivable": False, "archiveStatusMessage": "started"}
    assert lifecycles[(good, "datasetOnArchiveDisk")] == {
        "archivable": False,
        "retrievable": True,
        "archiveStatusMessage": "datasetOnArchiveDisk",
    }
    assert lifecycles[(bad, "missingFilesError")]["archivable"] is True
    counts = {s: [x for x, _ in log].count(s) for s, _ in log}
    assert counts == {
        "job.requested.archive": 1,
        "job.status": 2,
        "dataset.lifecycle": 4,
        "lts.moved": 2,
        "lts.verified": 2,
        "dataset.archived": 1,
    }
    statuses = [b["status_code"] for s, b in log if s == "job.status"]
    assert statuses == ["inProgress", "finishedWithDatasetErrors"]
    archived = next(b for s, b in log if s == "dataset.archived")
    assert archived["pid"] == good
    assert len(archived["archive_ids"]) == 2


async def test_a_corrupted_copy_is_recopied_and_then_verifies(
    world, nats_server_process, s3_server
) -> None:
    """A byte flipped in LTS before verification fails the check; attempt 1 is good."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/flip-{tag}", f"job-{tag}"
    (raw,) = await pack(js, s3, pid, [b"z" * 20000])
    copy = root / f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar"
    url = nats_server_process.url

    async with running(create_ltsmover(mover_settings(url, s3_server, root))):
        job = archive_job(job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())

        async def moved() -> bool:
            return any(s == "lts.moved" for s, _ in await events(js, job_id))

        await until(moved)
        corrupted = bytearray(copy.read_bytes())
        corrupted[600] ^= 0xFF
        copy.write_bytes(bytes(corrupted))
        async with running(create_verifier(verifier_settings(url, s3_server, root))):
            record = await finished(js, job_id)
    log = await events(js, job_id)

    assert record.status == "finishedSuccessful"
    assert record.datasets[pid].datablocks[copy.relative_to(root).as_posix()].attempt == 1
    assert copy.read_bytes() == raw
    verdicts = [(b["attempt"], b["ok"]) for s, b in log if s == "lts.verified"]
    assert verdicts == [(0, False), (1, True)]
    first = next(b for s, b in log if s == "lts.verified")
    assert "member checksum mismatch: file0.dat" in first["reason"]


async def test_a_second_job_for_an_archived_dataset_does_not_copy_again(
    world, nats_server_process, s3_server
) -> None:
    """The same dataset in two jobs, and the first job re-sent: one LTS copy, both succeed."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, first_id, second_id = f"20.500/twice-{tag}", f"job-a-{tag}", f"job-b-{tag}"
    await pack(js, s3, pid, [b"q" * 5000])
    url = nats_server_process.url

    async with (
        running(create_ltsmover(mover_settings(url, s3_server, root))),
        running(create_verifier(verifier_settings(url, s3_server, root))),
    ):
        first = archive_job(first_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, first, msg_id=first.dedup_id())
        await finished(js, first_id)
        copies = [p for p in root.rglob("*") if p.is_file()]
        written = copies[0].stat().st_mtime_ns
        second = archive_job(second_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, second, msg_id=second.dedup_id())
        # The first job delivered again (a redelivery, not a duplicate publish).
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, first, msg_id=f"again-{tag}")
        record = await finished(js, second_id)
        await asyncio.sleep(0.3)
    first_record = await job_record(js, first_id)

    assert record.status == "finishedSuccessful"
    assert first_record is not None
    assert first_record.status == "finishedSuccessful"
    (block,) = record.datasets[pid].datablocks.values()
    assert block.copied is False
    assert [p for p in root.rglob("*") if p.is_file()] == copies
    assert copies[0].stat().st_mtime_ns == written
    first_log = await events(js, first_id)
    assert [s for s, _ in first_log].count("lts.moved") == 1
    assert [s for s, _ in first_log].count("job.status") == 2
