"""The payload guard against a real nats-server whose max_payload is tiny (8 KiB)."""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from pydantic import SecretStr

from contracts import subjects
from contracts.events import DatasetPackingFailed, UploadFinished
from devstack.processes import ManagedProcess, free_port, port_open, tool_path
from runtime.nats_connection import connect
from runtime.publishing import publish_event
from runtime.settings import LtsSettings, NatsSettings, S3Settings
from services.datablocker.app import create_app
from services.datablocker.settings import DatablockerSettings
from tests.datablocker.landing_fixtures import minio_client, new_pid, put_file
from tests.datablocker.scicat_standin import ScicatStandin
from tests.polling import eventually


@pytest.fixture(scope="module")
def small_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with JetStream and `max_payload: 8192`; yields its URL."""
    base = tmp_path_factory.mktemp("small-nats")
    config = base / "nats.conf"
    config.write_text("max_payload: 8192\n")
    port = free_port()
    process = ManagedProcess(
        name="small-nats",
        argv=[
            tool_path("nats-server"),
            "--config",
            str(config),
            "--jetstream",
            "--store_dir",
            str(base / "store"),
            "--addr",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log_path=base / "nats.log",
    )
    process.start()
    process.wait_ready(lambda: port_open(port), 10)
    yield f"nats://127.0.0.1:{port}"
    process.stop()


@pytest.fixture
async def small_client(small_nats: str) -> AsyncIterator[NatsClient]:
    client = await connect(NatsSettings(url=small_nats), "tests")
    yield client
    await client.drain()


async def test_a_dataset_too_large_for_one_message_fails_as_system_with_no_datablocks(
    small_nats: str,
    small_client: NatsClient,
    s3_server,
    scicat_standin: ScicatStandin,
    tmp_path: Path,
) -> None:
    """40 files cannot be listed in 8 KiB: packing_failed "system" naming both; no tar left."""
    js = small_client.jetstream()
    s3 = minio_client(s3_server)
    pid = new_pid()
    for n in range(40):
        put_file(s3, pid, f"frames/frame_{n:04d}.tif", b"x")
    scicat_standin.register(pid)
    settings = DatablockerSettings(
        nats=NatsSettings(url=small_nats),
        s3=S3Settings(
            endpoint=s3_server.endpoint,
            access_key=SecretStr(s3_server.access_key),
            secret_key=SecretStr(s3_server.secret_key),
        ),
        scicat=scicat_standin.settings(),
        lts=LtsSettings(backend="posix", root=tmp_path),
    )
    app = create_app(settings)
    await app.start()
    try:
        event = UploadFinished(
            occurred_at=datetime.now(UTC),
            pid=pid,
            owner_group="g",
            create_archiving_job=False,
            source="finalize",
        )
        sent = await publish_event(js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())
        info = await eventually(
            lambda: js.consumer_info("ARCHIVER", "datablocker--upload_finished"),
            "the oversized upload.finished settled",
            done=lambda info: info.ack_floor.stream_seq >= sent.seq and info.num_ack_pending == 0,
            timeout_s=10,
            interval_s=0.05,
        )
    finally:
        await app.stop()
    failed = DatasetPackingFailed.model_validate_json(
        (await js.get_last_msg("ARCHIVER", subjects.DATASET_PACKING_FAILED)).data
    )
    prefix = f"openem-network/datasets/{pid}/datablocks/"

    assert small_client.max_payload == 8192
    assert (failed.pid, failed.kind) == (pid, "system")
    assert f"dataset {pid} has 40 files" in failed.reason
    assert "8,192-byte message limit" in failed.reason
    assert list(s3.list_objects("archival", prefix=prefix, recursive=True)) == []
    assert info.num_redelivered == 0
