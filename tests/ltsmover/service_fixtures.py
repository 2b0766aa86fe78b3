"""ltsmover and verifier run in this process: their settings, tars, and what they left behind."""

import asyncio
import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from contracts import kv
from contracts.events import Datablock, DatablocksCreated, DataFile, JobDataset, JobRequested
from contracts.jobs import JobRecord
from runtime.kvstore import open_bucket
from runtime.settings import LtsSettings, S3Settings
from services.ltsmover.settings import LtsMoverSettings
from services.verifier.settings import VerifierSettings
from tests.conftest import bus_settings
from tests.polling import eventually

TAR_MTIME = 1_700_000_000


def s3_settings(s3_server) -> S3Settings:
    return S3Settings(
        endpoint=s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )


def mover_settings(nats_url: str, s3_server, root: Path, **extra) -> LtsMoverSettings:
    """Posix LTS, no free-space minimum, fast polls; `extra` overrides."""
    values = {
        "min_free_percent": 0,
        "free_space_poll_s": 0.05,
        "recall_poll_s": 0.1,
        "recall_timeout_s": 10.0,
        **extra,
    }
    return LtsMoverSettings(
        nats=bus_settings(nats_url, "ltsmover"),
        s3=s3_settings(s3_server),
        lts=LtsSettings(backend="posix", root=root),
        **values,
    )


def verifier_settings(nats_url: str, s3_server, root: Path) -> VerifierSettings:
    return VerifierSettings(
        nats=bus_settings(nats_url, "verifier"),
        s3=s3_settings(s3_server),
        lts=LtsSettings(backend="posix", root=root),
        recall_poll_s=0.05,
        recall_timeout_s=2.0,
    )


@asynccontextmanager
async def running(app) -> AsyncIterator[None]:
    await app.start()
    try:
        yield
    finally:
        await app.stop()


def build_tar(members: dict[str, bytes]) -> tuple[bytes, tuple[DataFile, ...]]:
    """A real tar of `members` and its file list, as the datablocker records it."""
    buffer = io.BytesIO()
    files = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = TAR_MTIME
            tar.addfile(info, io.BytesIO(data))
            files.append(
                DataFile(
                    path=name,
                    size=len(data),
                    time=datetime.fromtimestamp(TAR_MTIME, UTC),
                    chk=hashlib.sha256(data).hexdigest(),
                )
            )
    return buffer.getvalue(), tuple(files)


async def record_datablocks(
    js: JetStreamContext,
    pid: str,
    blocks: list[dict[str, bytes]],
    store: Callable[[str, bytes], object],
) -> list[bytes]:
    """Tar each of `blocks`, `store(archive_id, tar)` it, and record them in KV; the tars."""
    slug = pid.replace("/", "-")
    records, raws = [], []
    for n, members in enumerate(blocks):
        raw, files = build_tar(members)
        archive_id = f"openem-network/datasets/{pid}/datablocks/{slug}_{n}.tar"
        await asyncio.to_thread(store, archive_id, raw)
        records.append(
            Datablock(
                archive_id=archive_id,
                size=sum(len(d) for d in members.values()),
                packed_size=len(raw),
                tar_sha256=hashlib.sha256(raw).hexdigest(),
                data_file_list=files,
            )
        )
        raws.append(raw)
    created = DatablocksCreated(
        occurred_at=datetime.now(UTC),
        pid=pid,
        datablocks=tuple(records),
        create_archiving_job=False,
        owner_group="group1",
    )
    bucket = await open_bucket(js, kv.DATABLOCKS)
    await bucket.put(kv.id_key(pid), created.model_dump_json().encode())
    return raws


def job_request(job_type: str, job_id: str, *pids: str) -> JobRequested:
    return JobRequested(
        occurred_at=datetime.now(UTC),
        job_id=job_id,
        job_type=job_type,
        datasets=tuple(JobDataset(pid=p) for p in pids),
        scicat_api="v4",
    )


async def job_record(js: JetStreamContext, job_id: str) -> JobRecord | None:
    bucket = await open_bucket(js, kv.JOBS)
    try:
        entry = await bucket.get(kv.id_key(job_id))
    except KeyNotFoundError:
        return None
    return JobRecord.model_validate_json(entry.value)


async def finished(js: JetStreamContext, job_id: str) -> JobRecord:
    async def done() -> bool:
        record = await job_record(js, job_id)
        return record is not None and record.finished

    await eventually(done, f"job {job_id} finished", timeout_s=15.0, interval_s=0.05)
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
