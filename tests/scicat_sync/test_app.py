"""scicat_sync in-process over the real nats-server, writing to the real SciCat stand-in.

Every event is preceded by the record its producer keeps (the datablocker's packed
datablocks, the job records of the gateway and ltsmover), as in the running system:
scicat_sync writes only what those records bear out.
"""

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from nats.js import JetStreamContext
from pydantic import BaseModel, SecretStr

from contracts import kv, subjects
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    DatasetLifecycleChanged,
    JobStatusChanged,
)
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from contracts.retrievals import RetrievalCopy
from contracts.scicat import LifecyclePatch
from runtime.kvstore import open_bucket
from runtime.publishing import publish_event
from runtime.settings import S3Settings, ScicatSettings
from services.scicat_sync.app import create_app
from services.scicat_sync.ledger import AppliedLedger
from services.scicat_sync.settings import ScicatSyncSettings
from tests.conftest import bus_settings
from tests.deadletters import dead_letters
from tests.polling import eventually
from tests.scicat_sync.conftest import ADMIN, ARCHIVER, JOB_CREATOR, Standin

SHA = "b" * 64
START = datetime(2025, 6, 1, 8, 0, 0, tzinfo=UTC)
DOWNLOADS = "https://downloads.example.org"


def settings(nats_url: str, scicat_url: str, nak_delays_s: tuple[float, ...]) -> ScicatSyncSettings:
    return ScicatSyncSettings(
        nats=bus_settings(nats_url, "scicat_sync"),
        scicat=ScicatSettings(
            url=scicat_url, username=ARCHIVER[0], password=SecretStr(ARCHIVER[1]), timeout_s=2
        ),
        # Presigning is local: no S3 server is needed to sign a URL.
        s3=S3Settings(
            endpoint="http://127.0.0.1:9",
            access_key=SecretStr("presign-only"),
            secret_key=SecretStr("presign-secret"),
        ),
        job_creator_username=JOB_CREATOR[0],
        job_creator_password=SecretStr(JOB_CREATOR[1]),
        retrieval_public_endpoint=DOWNLOADS,
        retry_budget_s=0.5,
        retry_wait_initial_s=0.05,
        retry_wait_max_s=0.2,
        nak_delays_s=nak_delays_s,
    )


@asynccontextmanager
async def running(config: ScicatSyncSettings) -> AsyncIterator[None]:
    app = create_app(config)
    await app.start()
    try:
        yield
    finally:
        await app.stop()


async def publish(js: JetStreamContext, subject: str, event: BaseModel, msg_id: str) -> None:
    await publish_event(js, subject, event, msg_id=msg_id)


async def record(js: JetStreamContext, bucket: str, identifier: str, value: BaseModel) -> None:
    """Put a record in a KV bucket as the service that owns it would."""
    kv_bucket = await open_bucket(js, bucket)
    await kv_bucket.put(kv.id_key(identifier), value.model_dump_json().encode())


def writes_to(
    standin: Standin, path_part: str, username: str = ARCHIVER[0]
) -> list[dict[str, Any]]:
    return [e for e in standin.history() if e["username"] == username and path_part in e["path"]]


def job_record(
    job_id: str,
    job_type: str,
    pid: str,
    *,
    started: datetime,
    decided: datetime | None = None,
    state: str = "inProgress",
    error: str | None = None,
    blocks: tuple[Datablock, ...] = (),
) -> JobRecord:
    """A job's record with one dataset: started, and decided (`state`) if `decided` is set."""
    ds = DatasetProgress(
        pid=pid,
        state=state,
        started_at=started,
        decided_at=decided,
        error=error,
        error_kind="system" if error else None,
        datablocks={
            b.archive_id: DatablockProgress(
                archive_id=b.archive_id,
                packed_size=b.packed_size,
                state="verified" if state == "succeeded" else "pending",
            )
            for b in blocks
        },
    )
    return JobRecord(
        job_id=job_id,
        job_type=job_type,
        scicat_api="v4",
        status="inProgress",
        status_message="Working",
        datasets={pid: ds},
        created_at=started,
        started_at=started,
    )


def finished(job: JobRecord, status: str, message: str, at: datetime) -> JobRecord:
    return job.model_copy(
        update={"status": status, "status_message": message, "finished_at": at}, deep=True
    )


async def test_a_whole_archive_and_retrieve_sequence_keeps_every_lifecycle_field(
    clean_js: JetStreamContext, ledger: AppliedLedger, nats_server_process, standin: Standin
) -> None:
    """Archive then retrieve: every lifecycle field set stays set, the retrieve job's result is
    built from the records (a signed URL for the public endpoint); duplicates change nothing."""
    pid = standin.create_dataset()
    retrieve_job = standin.create_job(pid, "retrieve")
    archive_job = f"archive-{retrieve_job}"
    archive_id = f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar"
    block = Datablock(
        archive_id=archive_id,
        size=3,
        packed_size=1536,
        tar_sha256=SHA,
        data_file_list=(DataFile(path="raw/x.bin", size=3, time=START, chk=SHA),),
    )
    t = [START + timedelta(seconds=i) for i in range(10)]
    created = DatablocksCreated(
        occurred_at=t[0],
        pid=pid,
        datablocks=(block,),
        create_archiving_job=True,
        owner_group="group1",
        contact_email="someone@example.org",
    )
    await record(clean_js, kv.DATABLOCKS, pid, created)
    archived = job_record(
        archive_job, "archive", pid, started=t[1], decided=t[2], state="succeeded", blocks=(block,)
    )
    await record(clean_js, kv.JOBS, archive_job, archived)
    retrieving = job_record(
        retrieve_job,
        "retrieve",
        pid,
        started=t[4],
        decided=t[5],
        state="succeeded",
        blocks=(block,),
    ).model_copy(update={"started_at": t[3], "status_message": "retrieving"})
    await record(clean_js, kv.JOBS, retrieve_job, retrieving)
    await record(
        clean_js,
        kv.RETRIEVALS,
        archive_id,
        RetrievalCopy(
            archive_id=archive_id,
            pid=pid,
            key=f"openem-network/datasets/{pid}/retrieved/{pid.replace('/', '-')}_0.tar",
            state="verified",
            job_id=retrieve_job,
            claimed_at=t[4],
            verified_at=datetime.now(UTC),
            expires_at=datetime.now(UTC) + timedelta(days=2),
        ),
    )

    def lifecycle_event(at: datetime, job_id: str, **fields: Any) -> DatasetLifecycleChanged:
        return DatasetLifecycleChanged(
            occurred_at=at, pid=pid, job_id=job_id, lifecycle=LifecyclePatch(**fields)
        )

    events: list[tuple[str, BaseModel, Callable[[], bool]]] = [
        (
            subjects.DATABLOCKS_CREATED,
            created,
            lambda: len(writes_to(standin, "/jobs", JOB_CREATOR[0])) == 1,
        ),
        (
            subjects.DATASET_LIFECYCLE,
            lifecycle_event(t[1], archive_job, archivable=False, archive_status_message="started"),
            lambda: standin.lifecycle(pid)["archiveStatusMessage"] == "started",
        ),
        (
            subjects.DATASET_LIFECYCLE,
            lifecycle_event(
                t[2],
                archive_job,
                archive_status_message="datasetOnArchiveDisk",
                archivable=False,
                retrievable=True,
            ),
            lambda: standin.lifecycle(pid)["archiveStatusMessage"] == "datasetOnArchiveDisk",
        ),
        (
            subjects.JOB_STATUS,
            JobStatusChanged(
                occurred_at=t[3],
                job_id=retrieve_job,
                status_code="inProgress",
                status_message="retrieving",
            ),
            lambda: standin.get(f"/v4/jobs/{retrieve_job}")["statusCode"] == "inProgress",
        ),
        (
            subjects.DATASET_LIFECYCLE,
            lifecycle_event(t[4], retrieve_job, retrieve_status_message="started"),
            lambda: standin.lifecycle(pid)["retrieveStatusMessage"] == "started",
        ),
        (
            subjects.DATASET_LIFECYCLE,
            lifecycle_event(
                t[5],
                retrieve_job,
                retrieve_status_message="datasetRetrieved",
                retrieve_integrity_check=True,
            ),
            lambda: standin.lifecycle(pid)["retrieveStatusMessage"] == "datasetRetrieved",
        ),
        (
            subjects.JOB_STATUS,
            JobStatusChanged(
                occurred_at=t[6],
                job_id=retrieve_job,
                status_code="finishedSuccessful",
                status_message="retrieved",
            ),
            lambda: standin.get(f"/v4/jobs/{retrieve_job}")["statusCode"] == "finishedSuccessful",
        ),
    ]
    config = settings(nats_server_process.url, standin.url, (0.1,))

    async with running(config):
        for subject, event, applied in events:
            if subject == subjects.JOB_STATUS and event.status_code == "finishedSuccessful":  # type: ignore[attr-defined]
                # The ltsmover records the job finished before it announces it.
                done = finished(retrieving, "finishedSuccessful", "retrieved", t[6])
                await record(clean_js, kv.JOBS, retrieve_job, done)
            await publish(clean_js, subject, event, event.dedup_id())  # type: ignore[attr-defined]
            await eventually(
                applied, f"{subject} applied in SciCat", timeout_s=10.0, interval_s=0.1
            )
        history_before = len(standin.history())
        for subject, event, _ in events:  # redelivery: the same events once more
            await publish(clean_js, subject, event, f"{event.dedup_id()}:again")  # type: ignore[attr-defined]
        await eventually(
            lambda: len(standin.history()),
            "6 more SciCat requests for the redelivered events",
            done=lambda writes: writes >= history_before + 6,
            timeout_s=10.0,
            interval_s=0.1,
        )
        await asyncio.sleep(1.0)

    lifecycle = standin.lifecycle(pid)
    job = standin.get(f"/v4/jobs/{retrieve_job}")
    assert {
        k: lifecycle[k]
        for k in (
            "archivable",
            "retrievable",
            "archiveStatusMessage",
            "retrieveStatusMessage",
            "retrieveIntegrityCheck",
        )
    } == {
        "archivable": False,
        "retrievable": True,
        "archiveStatusMessage": "datasetOnArchiveDisk",
        "retrieveStatusMessage": "datasetRetrieved",
        "retrieveIntegrityCheck": True,
    }
    assert len(standin.get(f"/v3/Datasets/{pid.replace('/', '%2F')}/datablocks")) == 1
    job_posts = [e for e in writes_to(standin, "/jobs", JOB_CREATOR[0]) if e["method"] == "POST"]
    assert len(job_posts) == 1
    assert (job["statusCode"], job["statusMessage"]) == ("finishedSuccessful", "retrieved")
    (offer,) = job["jobResultObject"]["result"]
    url = offer.pop("url")
    assert offer == {
        "datasetId": pid,
        "name": f"{pid.replace('/', '-')}_0.tar",
        "size": 1536,
        "archiveId": archive_id,
    }
    assert url.startswith(f"{DOWNLOADS}/retrieval/openem-network/datasets/")
    assert "X-Amz-Signature" in parse_qs(urlsplit(url).query)
    script = base64.b64decode(job["jobResultObject"]["downloadScript"]).decode()
    assert "raw/x.bin" in script
    assert not [
        e for e in writes_to(standin, pid) if e["method"] == "PATCH" and e["path"].endswith(pid)
    ], "never a dataset PATCH"
    assert await dead_letters(clean_js) == []


def blocks_of(pid: str, count: int) -> tuple[Datablock, ...]:
    """`count` datablocks of 1536 packed bytes and one file each."""
    stem = f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}"
    return tuple(
        Datablock(
            archive_id=f"{stem}_{n}.tar",
            size=3,
            packed_size=1536,
            tar_sha256=SHA,
            data_file_list=(DataFile(path=f"raw/{n}.bin", size=3, time=START, chk=SHA),),
        )
        for n in range(count)
    )


async def test_concurrent_datablocks_and_lifecycle_of_one_dataset_both_land(
    clean_js: JetStreamContext, ledger: AppliedLedger, nats_server_process, standin: Standin
) -> None:
    """SciCat writes a dataset by read-merge-write (backend src/datasets/datasets.controller.ts
    findByIdAndUpdateLifecycle, createDatablock; the stand-in pauses 50 ms in between), so two
    writes at once lose one. A retrieve job's lifecycle change arriving while a
    datablocks.created is being written (two block POSTs, then its lifecycle PATCH), 60-150 ms
    after it, lands and loses nothing of the other: scicat_sync writes one dataset at a time."""
    async with running(settings(nats_server_process.url, standin.url, (0.1,))):
        for later_s in (0.06, 0.09, 0.12, 0.15):
            pid = standin.create_dataset()
            with standin.client(*ADMIN) as http:  # a packing failure before: not archivable
                http.patch(
                    f"/v3/Datasets/{pid.replace('/', '%2F')}/datasetlifecycle",
                    json={"archivable": False, "archiveStatusMessage": "missingFilesError"},
                ).raise_for_status()
            retrieve_job = standin.create_job(pid, "retrieve")
            at = START + timedelta(seconds=1)
            created = DatablocksCreated(
                occurred_at=START,
                pid=pid,
                datablocks=blocks_of(pid, 2),
                create_archiving_job=False,
                owner_group="group1",
            )
            retrieving = DatasetLifecycleChanged(
                occurred_at=at,
                pid=pid,
                job_id=retrieve_job,
                lifecycle=LifecyclePatch(retrieve_status_message="started"),
            )
            await record(clean_js, kv.DATABLOCKS, pid, created)
            await record(
                clean_js,
                kv.JOBS,
                retrieve_job,
                job_record(retrieve_job, "retrieve", pid, started=at),
            )

            await publish(clean_js, subjects.DATABLOCKS_CREATED, created, created.dedup_id())
            await asyncio.sleep(later_s)
            await publish(clean_js, subjects.DATASET_LIFECYCLE, retrieving, retrieving.dedup_id())
            await eventually(
                lambda pid=pid: len(writes_to(standin, pid)),
                f"{pid}: 2 datablock POSTs and 2 lifecycle PATCHes",
                done=lambda writes: writes >= 4,
                timeout_s=20.0,
                interval_s=0.05,
            )

            dataset = standin.get(f"/v3/Datasets/{pid.replace('/', '%2F')}")
            lifecycle = dataset["datasetlifecycle"]
            assert (dataset["packedSize"], dataset["numberOfFilesArchived"]) == (3072, 2), later_s
            assert (
                lifecycle["archivable"],
                lifecycle["archiveStatusMessage"],
                lifecycle["retrieveStatusMessage"],
            ) == (True, "datasetCreated", "started"), later_s
    assert await dead_letters(clean_js) == []


async def outage_scenario(
    js: JetStreamContext,
    nats_url: str,
    standin: Standin,
    outage_s: float,
    nak_delays_s: tuple[float, ...],
) -> None:
    """50 events, each after its record: two retrieve jobs start (steps 0, 1) and finish (48,
    49); in between 46 jobs of KV only each fail the dataset with reason "step i"."""
    pid = standin.create_dataset()
    jobs = [standin.create_job(pid, "retrieve") for _ in range(2)]
    config = settings(nats_url, standin.url, nak_delays_s)
    at = [START + timedelta(seconds=i) for i in range(50)]
    records = {
        job_id: job_record(job_id, "retrieve", pid, started=at[n]).model_copy(
            update={"status_message": f"step {n}"}
        )
        for n, job_id in enumerate(jobs)
    }

    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    async with running(config):
        for i in range(50):
            event: BaseModel
            if i < 2:
                await record(js, kv.JOBS, jobs[i], records[jobs[i]])
                event = JobStatusChanged(
                    occurred_at=at[i],
                    job_id=jobs[i],
                    status_code="inProgress",
                    status_message=f"step {i}",
                )
                await publish(js, subjects.JOB_STATUS, event, event.dedup_id())
            elif i >= 48:
                job_id = jobs[i - 48]
                done = finished(records[job_id], "finishedSuccessful", f"step {i}", at[i])
                await record(js, kv.JOBS, job_id, done)
                event = JobStatusChanged(
                    occurred_at=at[i],
                    job_id=job_id,
                    status_code="finishedSuccessful",
                    status_message=f"step {i}",
                )
                await publish(js, subjects.JOB_STATUS, event, event.dedup_id())
            else:
                job_id = f"{jobs[0]}-step-{i}"
                failed = job_record(
                    job_id,
                    "retrieve",
                    pid,
                    started=at[i] - timedelta(milliseconds=1),
                    decided=at[i],
                    state="failed",
                    error=f"step {i}",
                )
                await record(js, kv.JOBS, job_id, failed)
                event = DatasetLifecycleChanged(
                    occurred_at=at[i],
                    pid=pid,
                    job_id=job_id,
                    lifecycle=LifecyclePatch(
                        retrieve_status_message="datasetRetrievalFailed",
                        retrieve_return_message=f"step {i}",
                    ),
                )
                await publish(js, subjects.DATASET_LIFECYCLE, event, event.dedup_id())
            if i == 15:
                standin.stop()
                stopped_at = loop.time()
            await asyncio.sleep(outage_s / 100)
        # Events 16-49 arrived while SciCat was down; it stays down for outage_s in all.
        await asyncio.sleep(max(0.0, stopped_at + outage_s - loop.time()))
        standin.start()  # on its persisted state dir
        await eventually(
            lambda: (
                all(
                    standin.get(f"/v4/jobs/{j}")["statusCode"] == "finishedSuccessful" for j in jobs
                )
                and standin.lifecycle(pid).get("retrieveReturnMessage") == {"message": "step 47"}
            ),
            "both jobs finished and the last lifecycle step written after the outage",
            timeout_s=outage_s * 4 + 20,
            interval_s=0.1,
        )
        await asyncio.sleep(0.5)

    assert standin.get(f"/v4/jobs/{jobs[0]}")["statusMessage"] == "step 48"
    assert standin.get(f"/v4/jobs/{jobs[1]}")["statusMessage"] == "step 49"
    assert standin.lifecycle(pid)["retrieveReturnMessage"] == {"message": "step 47"}
    for target in (*jobs, pid):
        steps = [
            int(
                str(
                    e["body"].get("statusMessage") or e["body"]["retrieveReturnMessage"]["message"]
                )[5:]
            )
            for e in writes_to(standin, target)
            if e["method"] == "PATCH" and e["status"] < 300
        ]
        assert steps == sorted(steps), f"{target}: applied out of order: {steps}"
    assert await dead_letters(js) == []


async def test_scicat_down_mid_stream_loses_nothing_and_ends_in_order(
    clean_js: JetStreamContext, ledger: AppliedLedger, nats_server_process, standin: Standin
) -> None:
    """SciCat stopped ~6 s during 50 events: final state right, nothing dead-lettered."""
    await outage_scenario(
        clean_js, nats_server_process.url, standin, 6.0, (0.2, 0.5, 1, 1, 2, 2, 2, 2, 2, 2, 2)
    )


@pytest.mark.slow
async def test_scicat_down_30_seconds_mid_stream_loses_nothing(
    clean_js: JetStreamContext, ledger: AppliedLedger, nats_server_process, standin: Standin
) -> None:
    """The acceptance drill: 30 s of SciCat outage inside a stream of 50 events."""
    await outage_scenario(
        clean_js, nats_server_process.url, standin, 30.0, (0.5, 1, 2, 4, 5, 5, 5, 5, 5, 5, 5)
    )
