"""scicat_sync in-process over the real nats-server, writing to the real SciCat stand-in."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext
from pydantic import BaseModel, SecretStr

from contracts import subjects
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    DatasetLifecycleChanged,
    JobStatusChanged,
)
from contracts.scicat import LifecyclePatch
from runtime.publishing import publish_event
from runtime.settings import ScicatSettings
from services.scicat_sync.app import create_app
from services.scicat_sync.ledger import AppliedLedger
from services.scicat_sync.settings import ScicatSyncSettings
from tests.conftest import bus_settings
from tests.deadletters import dead_letters
from tests.polling import eventually
from tests.scicat_sync.conftest import ARCHIVER, Standin

SHA = "b" * 64
START = datetime(2025, 6, 1, 8, 0, 0, tzinfo=UTC)


def settings(nats_url: str, scicat_url: str, nak_delays_s: tuple[float, ...]) -> ScicatSyncSettings:
    return ScicatSyncSettings(
        nats=bus_settings(nats_url, "scicat_sync"),
        scicat=ScicatSettings(
            url=scicat_url, username=ARCHIVER[0], password=SecretStr(ARCHIVER[1]), timeout_s=2
        ),
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


def writes_to(standin: Standin, path_part: str) -> list[dict[str, Any]]:
    return [e for e in standin.history() if e["username"] == ARCHIVER[0] and path_part in e["path"]]


def lifecycle_event(pid: str, at: datetime, **fields: Any) -> DatasetLifecycleChanged:
    return DatasetLifecycleChanged(occurred_at=at, pid=pid, lifecycle=LifecyclePatch(**fields))


async def test_a_whole_archive_and_retrieve_sequence_keeps_every_lifecycle_field(
    clean_js: JetStreamContext, ledger: AppliedLedger, nats_server_process, standin: Standin
) -> None:
    """Archive then retrieve: every lifecycle field set stays set; duplicates change nothing."""
    pid = standin.create_dataset()
    retrieve_job = standin.create_job(pid, "retrieve")
    block = Datablock(
        archive_id=f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar",
        size=3,
        packed_size=1536,
        tar_sha256=SHA,
        data_file_list=(DataFile(path="raw/x.bin", size=3, time=START, chk=SHA),),
    )
    t = [START + timedelta(seconds=i) for i in range(10)]
    events: list[tuple[str, BaseModel, Callable[[], bool]]] = [
        (
            subjects.DATABLOCKS_CREATED,
            DatablocksCreated(
                occurred_at=t[0],
                pid=pid,
                datablocks=(block,),
                create_archiving_job=True,
                owner_group="group1",
                contact_email="someone@example.org",
            ),
            lambda: len(writes_to(standin, "/jobs")) == 1,
        ),
        (
            subjects.DATASET_LIFECYCLE,
            lifecycle_event(pid, t[1], archivable=False, archive_status_message="started"),
            lambda: standin.lifecycle(pid)["archiveStatusMessage"] == "started",
        ),
        (
            subjects.DATASET_LIFECYCLE,
            lifecycle_event(
                pid, t[2], archive_status_message="datasetOnArchiveDisk", retrievable=True
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
            lifecycle_event(pid, t[4], retrieve_status_message="started"),
            lambda: standin.lifecycle(pid)["retrieveStatusMessage"] == "started",
        ),
        (
            subjects.DATASET_LIFECYCLE,
            lifecycle_event(
                pid,
                t[5],
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
                job_result_object={"result": [{"datasetId": pid}]},
            ),
            lambda: standin.get(f"/v4/jobs/{retrieve_job}")["statusCode"] == "finishedSuccessful",
        ),
    ]
    config = settings(nats_server_process.url, standin.url, (0.1,))

    async with running(config):
        for subject, event, applied in events:
            await publish(clean_js, subject, event, event.dedup_id())
            await eventually(
                applied, f"{subject} applied in SciCat", timeout_s=10.0, interval_s=0.1
            )
        history_before = len(standin.history())
        for subject, event, _ in events:  # redelivery: the same events once more
            await publish(clean_js, subject, event, f"{event.dedup_id()}:again")
        await eventually(
            lambda: len(standin.history()),
            "6 more SciCat writes for the redelivered events",
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
    assert len([e for e in writes_to(standin, "/jobs") if e["method"] == "POST"]) == 1
    assert (job["statusCode"], job["statusMessage"]) == ("finishedSuccessful", "retrieved")
    assert not [
        e for e in writes_to(standin, pid) if e["method"] == "PATCH" and e["path"].endswith(pid)
    ], "never a dataset PATCH"
    assert await dead_letters(clean_js) == []


async def outage_scenario(
    js: JetStreamContext,
    nats_url: str,
    standin: Standin,
    outage_s: float,
    nak_delays_s: tuple[float, ...],
) -> None:
    pid = standin.create_dataset()
    jobs = [standin.create_job(pid, "retrieve") for _ in range(2)]
    config = settings(nats_url, standin.url, nak_delays_s)

    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    async with running(config):
        for i in range(50):
            at = START + timedelta(seconds=i)
            if i % 2 == 0:
                event: BaseModel = JobStatusChanged(
                    occurred_at=at,
                    job_id=jobs[(i // 2) % 2],
                    status_code="finishedSuccessful" if i >= 46 else "inProgress",
                    status_message=f"step {i}",
                )
                await publish(js, subjects.JOB_STATUS, event, event.dedup_id())
            else:
                event = lifecycle_event(pid, at, retrieve_return_message=f"step {i}")
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
                and standin.lifecycle(pid).get("retrieveReturnMessage") == "step 49"
            ),
            "both jobs finished and the last lifecycle step written after the outage",
            timeout_s=outage_s * 4 + 20,
            interval_s=0.1,
        )
        await asyncio.sleep(0.5)

    assert standin.get(f"/v4/jobs/{jobs[0]}")["statusMessage"] == "step 48"
    assert standin.get(f"/v4/jobs/{jobs[1]}")["statusMessage"] == "step 46"
    assert standin.lifecycle(pid)["retrieveReturnMessage"] == "step 49"
    for target in (*jobs, pid):
        steps = [
            int(str(e["body"].get("statusMessage") or e["body"].get("retrieveReturnMessage"))[5:])
            for e in writes_to(standin, target)
            if e["method"] == "PATCH" and e["status"] < 300
        ]
        assert steps == sorted(steps), f"{target}: applied out of order: {steps}"
    assert await dead_letters(js) == []


async def test_scicat_down_mid_stream_loses_nothing_and_ends_in_order(
    clean_js: JetStreamContext, ledger: AppliedLedger, nats_server_process, standin: Standin
) -> None:
    """SciCat stopped ~6 s during 50 status events: final state right, nothing dead-lettered."""
    await outage_scenario(
        clean_js, nats_server_process.url, standin, 6.0, (0.2, 0.5, 1, 1, 2, 2, 2, 2, 2, 2, 2)
    )


@pytest.mark.slow
async def test_scicat_down_30_seconds_mid_stream_loses_nothing(
    clean_js: JetStreamContext, ledger: AppliedLedger, nats_server_process, standin: Standin
) -> None:
    """The acceptance drill: 30 s of SciCat outage inside a stream of 50 status events."""
    await outage_scenario(
        clean_js, nats_server_process.url, standin, 30.0, (0.5, 1, 2, 4, 5, 5, 5, 5, 5, 5, 5)
    )
