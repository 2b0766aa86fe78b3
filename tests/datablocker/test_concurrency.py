"""Parallel packing without prefetch: a block packed longer than the ack wait is never
redelivered."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.js import JetStreamContext
from pydantic import SecretStr

from contracts import streams, subjects
from contracts.events import DatablockRequested, UploadFinished
from runtime.provisioning import provision
from runtime.publishing import publish_event
from runtime.settings import LtsSettings, S3Settings
from services.datablocker.app import create_app
from services.datablocker.blocks import pack_requested_block
from services.datablocker.packing import Packer
from services.datablocker.settings import DatablockerSettings
from tests.datablocker.landing_fixtures import minio_client, new_pid, put_file
from tests.datablocker.scicat_standin import ScicatStandin
from tests.polling import eventually

ACK_WAIT = timedelta(seconds=1)
PACK_DELAY_S = 1.6
"""Longer than the ack wait: only heartbeats keep a message from coming back."""

UPLOAD_SPEC = replace(
    streams.DATABLOCKER_UPLOAD_FINISHED, durable="test-datablocker--upload_finished"
)
BLOCK_SPEC = replace(
    streams.DATABLOCKER_DATABLOCK_REQUESTED,
    durable="test-datablocker--datablock_requested",
    ack_wait=ACK_WAIT,
)
ARCHIVED_SPEC = replace(
    streams.DATABLOCKER_DATASET_ARCHIVED, durable="test-datablocker--dataset_archived"
)


async def test_two_datasets_pack_in_parallel_and_a_waiting_one_is_not_redelivered(
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server,
    scicat_standin: ScicatStandin,
    tmp_path: Path,
) -> None:
    """3 slow packs, 2 at a time, 1 s ack wait: first two overlap, each dataset packed once."""
    await provision(
        clean_js, consumers=(*streams.CONSUMERS, UPLOAD_SPEC, BLOCK_SPEC, ARCHIVED_SPEC)
    )
    s3 = minio_client(s3_server)
    pids = [new_pid() for _ in range(3)]
    for pid in pids:
        put_file(s3, pid, "a.txt", b"hello world")
        scicat_standin.register(pid)
    loop = asyncio.get_running_loop()
    runs: list[tuple[str, float, float]] = []

    async def slow_pack(event: DatablockRequested, packer: Packer, *, max_payload: int | None):
        started = loop.time()
        await asyncio.sleep(PACK_DELAY_S)
        outcome = await pack_requested_block(event, packer, max_payload=max_payload)
        runs.append((event.pid, started, loop.time()))
        return outcome

    settings = DatablockerSettings(
        # The harness user: the test's own durables are in no service's permissions.
        nats=nats_server_process.settings(),
        s3=S3Settings(
            endpoint=s3_server.endpoint,
            access_key=SecretStr(s3_server.access_key),
            secret_key=SecretStr(s3_server.secret_key),
        ),
        scicat=scicat_standin.settings(),
        lts=LtsSettings(backend="posix", root=tmp_path),
        max_parallel_blocks=2,
    )
    app = create_app(
        settings,
        consumer_overrides={
            streams.DATABLOCKER_UPLOAD_FINISHED.durable: UPLOAD_SPEC,
            streams.DATABLOCKER_DATABLOCK_REQUESTED.durable: BLOCK_SPEC,
            streams.DATABLOCKER_DATASET_ARCHIVED.durable: ARCHIVED_SPEC,
        },
        pack=slow_pack,
    )
    await app.start()
    try:
        for pid in pids:
            event = UploadFinished(
                occurred_at=datetime.now(UTC),
                pid=pid,
                owner_group="g",
                create_archiving_job=False,
                source="finalize",
            )
            await publish_event(clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())
        await eventually(
            lambda: len(runs) == 3,
            "every datablock packed",
            timeout_s=15,
            interval_s=0.05,
            explain=lambda: f"not all packed: {runs}",
        )
        await eventually(
            lambda: clean_js.consumer_info("ARCHIVER", BLOCK_SPEC.durable),
            "every datablock.requested acked",
            done=lambda info: info.num_pending == 0 and info.num_ack_pending == 0,
            timeout_s=15,
            interval_s=0.05,
            explain=lambda: f"not all packed: {runs}",
        )
        await asyncio.sleep(ACK_WAIT.total_seconds() + 0.2)  # room for a late redelivery
        info = await clean_js.consumer_info("ARCHIVER", BLOCK_SPEC.durable)
    finally:
        await app.stop()
    first, second = sorted(runs, key=lambda r: r[1])[:2]

    assert sorted(pid for pid, _, _ in runs) == sorted(pids)
    assert second[1] < first[2], "the first two packs did not overlap"
    assert info.num_redelivered == 0
    assert info.num_pending == 0
