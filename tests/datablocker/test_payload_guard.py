"""The payload guard against a real nats-server whose max_payload is tiny (8 KiB)."""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from pydantic import SecretStr

from contracts import subjects
from contracts.events import DatasetPackingFailed, UploadFinished
from devstack.processes import free_port
from runtime.nats_connection import connect
from runtime.provisioning import provision
from runtime.publishing import publish_event
from runtime.settings import LtsSettings, S3Settings
from services.datablocker.app import create_app
from services.datablocker.settings import DatablockerSettings
from tests.conftest import NatsServer, bus_settings, write_nats_config
from tests.datablocker.landing_fixtures import minio_client, new_pid, put_file
from tests.datablocker.scicat_standin import ScicatStandin
from tests.polling import eventually


@pytest.fixture(scope="module")
def small_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with JetStream and `max_payload: 8192`; yields its URL."""
    base = tmp_path_factory.mktemp("small-nats")
    config = write_nats_config(base / "nats.conf", max_payload="8192")
    server = NatsServer(free_port(), base / "store", base / "nats.log", config)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
async def small_client(small_nats: str) -> AsyncIterator[NatsClient]:
    client = await connect(bus_settings(small_nats), "tests")
    await provision(client.jetstream())
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
        nats=bus_settings(small_nats, "datablocker"),
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
