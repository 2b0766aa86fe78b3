"""Outages of what the services depend on, duplicates, and LTS faults, during real archive jobs.

One stack for the module: nats-server killed and restarted on its store, the
SciCat stand-in down for 60 s, MinIO notifications and job POSTs repeated, the
LTS folder read-only for a while, and an LTS copy corrupted before it is verified.
"""

import asyncio
import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from contracts import streams, subjects
from devstack.processes import port_open
from tests.chaos.faults import corrupt_in_place, read_only
from tests.chaos.invariants import check_archived, sha256_of
from tests.chaos.jobs import RESTARTING, ChaosStack, small_dataset
from tests.polling import eventually

# A fault plus the 30 s ack wait of a killed handler: more than the default 120 s.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SCICAT_DOWN_S = 60.0
READ_ONLY_AFTER_FIRST_FAILURE_S = 6.0


def _job_auth(world: ChaosStack) -> dict[str, str]:
    secrets = world.stack.secrets
    credentials = f"{secrets.job_user}:{secrets.job_password}".encode()
    return {"Authorization": f"Basic {base64.b64encode(credentials).decode()}"}


def _minio_marker_event(pid: str) -> bytes:
    """MinIO's notification for the completion marker, as its NATS JetStream target sends it."""
    key = f"openem-network/datasets/{pid}/raw_files/.archiver-upload-complete"
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "EventName": "s3:ObjectCreated:Put",
            "Key": f"landing/{key}",
            "Records": [
                {
                    "eventVersion": "2.0",
                    "eventSource": "minio:s3",
                    "awsRegion": "",
                    "eventTime": now,
                    "eventName": "s3:ObjectCreated:Put",
                    "userIdentity": {"principalId": "ingestor"},
                    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                    "responseElements": {"x-amz-request-id": "17C5B2A8D1E0F3A4"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "Config",
                        "bucket": {"name": "landing", "arn": "arn:aws:s3:::landing"},
                        "object": {
                            "key": quote(key, safe=""),
                            "size": 0,
                            "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                            "contentType": "application/octet-stream",
                            "sequencer": "17C5B2A8D1E0F3A5",
                        },
                    },
                    "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO"},
                }
            ],
        }
    ).encode()


async def test_nats_killed_and_restarted_mid_job(world: ChaosStack, tmp_path: Path) -> None:
    """nats-server gets SIGKILL while a datablock is copied; restarted on its store, the
    services reconnect and the job completes once."""
    files = small_dataset(tmp_path / "n1", seed=101, big_mib=24)
    nats = world.stack.processes["nats"]

    async def copying() -> bool:
        return any(world.lts_root.rglob(".*.part"))

    async def kill_when_copying() -> None:
        while not await copying():
            await asyncio.sleep(0.003)
        nats.kill()

    killing = asyncio.create_task(kill_when_copying())
    dataset = await world.ingest(tmp_path / "n1", files, archive=True)
    await asyncio.wait_for(killing, 60)
    await asyncio.sleep(1.0)
    nats.start()
    nats.wait_ready(lambda: port_open(world.stack.ports.nats), 20)

    dataset.job_id = await world.job_of(dataset.pid)
    await world.wait_final(dataset.job_id)
    await check_archived(world, dataset, lts_temp_files_ok=True)


async def test_scicat_down_for_a_minute_mid_job(world: ChaosStack, tmp_path: Path) -> None:
    """SciCat is unreachable for 60 s after the job started; every write lands later, in order."""
    files = small_dataset(tmp_path / "s1", seed=202)
    scicat = world.stack.processes["scicat"]
    dataset = await world.ingest(tmp_path / "s1", files, archive=True)

    async def archiving_started() -> bool:
        path = f"/api/v3/datasets/{dataset.pid}/datasetlifecycle"
        return any(
            e["path"] == path and (e["body"] or {}).get("archiveStatusMessage") == "started"
            for e in await world.history()
        )

    await eventually(
        archiving_started,
        "lifecycle 'started' written",
        timeout_s=60,
        interval_s=0.05,
        ignoring=RESTARTING,
    )
    scicat.stop()
    down_since = time.monotonic()
    dataset.job_id = await world.job_of(dataset.pid)
    await asyncio.sleep(SCICAT_DOWN_S - (time.monotonic() - down_since))
    scicat.start()
    scicat.wait_ready(lambda: httpx.get(f"{world.stack.scicat_url}/v3/health").is_success, 30)

    await world.wait_final(dataset.job_id, timeout_s=120)
    await check_archived(world, dataset)


async def test_duplicate_notifications_and_job_posts_make_one_chain(
    world: ChaosStack, tmp_path: Path
) -> None:
    """The completion marker's notification arrives twice after finalize, and the job is
    POSTed twice more while it runs: one upload.finished, one job, one SciCat job."""
    files = small_dataset(tmp_path / "u1", seed=303)
    dataset = await world.ingest(tmp_path / "u1", files, archive=True)
    for _ in range(2):
        await world.js.publish(subjects.MINIO_EVENTS, _minio_marker_event(dataset.pid))
    dataset.job_id = await world.job_of(dataset.pid)
    scicat_job = await world.job(dataset.job_id)
    url = f"{world.stack.gateway_url}/archiver/jobs"
    replies = await asyncio.gather(
        *(world.http.post(url, json=scicat_job, headers=_job_auth(world)) for _ in range(2))
    )
    assert [r.status_code for r in replies] == [201, 201]
    assert {r.json()["uuid"] for r in replies} == {dataset.job_id}

    await world.wait_final(dataset.job_id)

    async def notifications_settled() -> bool:
        return await world.ack_pending(streams.GATEWAY_MINIO_EVENTS) == 0

    await eventually(
        notifications_settled,
        "MinIO notifications handled",
        timeout_s=30,
        interval_s=0.25,
        ignoring=RESTARTING,
    )
    created = [
        e
        for e in await world.history()
        if e["method"] == "POST"
        and e["path"] == "/api/v4/jobs"
        and any(d["pid"] == dataset.pid for d in e["body"]["jobParams"]["datasetList"])
    ]
    assert len(created) == 1, created
    await check_archived(world, dataset)


async def test_lts_read_only_for_a_while_then_job_completes(
    world: ChaosStack, tmp_path: Path
) -> None:
    """The LTS folder refuses writes; the copy is retried with backoff and, once writable
    again (well inside the ~1 h retry budget of 12 deliveries), the job completes."""
    files = small_dataset(tmp_path / "r1", seed=404)
    log = world.stack.processes["ltsmover"].log_path
    offset = log.stat().st_size

    def retries() -> int:
        text = log.read_bytes()[offset:].decode(errors="replace")
        return text.count("message.retry_later")

    with read_only(world.lts_root):
        dataset = await world.ingest(tmp_path / "r1", files, archive=True)

        async def refused() -> bool:
            return retries() > 0

        await eventually(
            refused,
            "the ltsmover refused by the read-only LTS",
            timeout_s=60,
            interval_s=0.25,
            ignoring=RESTARTING,
        )
        await asyncio.sleep(READ_ONLY_AFTER_FIRST_FAILURE_S)
    assert retries() >= 2, "the write was not retried while LTS was read-only"

    dataset.job_id = await world.job_of(dataset.pid)
    await world.wait_final(dataset.job_id, timeout_s=90)
    await check_archived(world, dataset)


async def test_lts_copy_corrupted_before_verification_is_copied_again(
    world: ChaosStack, tmp_path: Path
) -> None:
    """A copy damaged between move and verification fails its check, is copied again
    (attempt 1), verifies, and the job succeeds."""
    files = small_dataset(tmp_path / "c1", seed=505)
    verifier = world.stack.processes["verifier"]
    verifier.stop()
    try:
        dataset = await world.ingest(tmp_path / "c1", files, archive=True)
        moved = await eventually(
            lambda: world.events_of(subjects.LTS_MOVED, dataset.pid),
            "lts.moved",
            timeout_s=60,
            interval_s=0.25,
            ignoring=RESTARTING,
        )
        assert moved, "no lts.moved to corrupt the copy of"
        for event in moved:
            copy = world.lts_root / event["datablock"]["archive_id"]
            corrupt_in_place(copy)
            assert sha256_of(copy) != event["datablock"]["tar_sha256"]
        assert not await world.events_of(subjects.LTS_VERIFIED, dataset.pid), "verified early"
    finally:
        verifier.start()

    dataset.job_id = await world.job_of(dataset.pid)
    await world.wait_final(dataset.job_id)
    verified = await world.events_of(subjects.LTS_VERIFIED, dataset.pid)
    verdicts = [(e["attempt"], e["ok"]) for e in verified]
    assert (0, False) in verdicts, verdicts
    assert (1, True) in verdicts, verdicts
    await check_archived(world, dataset)
