"""The datablocker running in-process on the real nats-server and moto S3."""

import asyncio
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import SecretStr

from contracts import kv, subjects
from contracts.events import DatablocksCreated, DatasetPackingFailed, UploadFinished
from runtime.bus import publish_event
from runtime.provisioning import provision
from runtime.settings import NatsSettings, S3Settings
from services.datablocker.app import create_app
from services.datablocker.settings import DatablockerSettings
from tests.datablocker.landing_fixtures import minio_client, new_pid, put_file


async def last_on(js: JetStreamContext, subject: str, timeout_s: float = 10.0) -> bytes:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return (await js.get_last_msg("ARCHIVER", subject)).data
        except NotFoundError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


def upload_finished(pid: str) -> UploadFinished:
    return UploadFinished(
        occurred_at=datetime.now(UTC),
        pid=pid,
        owner_group="group1",
        create_archiving_job=True,
        source="finalize",
        correlation_id="corr-1",
    )


async def test_upload_finished_is_packed_and_datablocks_created_published(
    clean_js: JetStreamContext, nats_server_process, s3_server
) -> None:
    """upload.finished in, datablocks.created out (stored in KV too); an empty dataset fails."""
    await provision(clean_js)
    s3 = minio_client(s3_server)
    pid, empty_pid = new_pid(), new_pid()
    put_file(s3, pid, "data/a.txt", b"hello world")
    settings = DatablockerSettings(
        nats=NatsSettings(url=nats_server_process.url),
        s3=S3Settings(
            endpoint=s3_server.endpoint,
            access_key=SecretStr(s3_server.access_key),
            secret_key=SecretStr(s3_server.secret_key),
        ),
    )
    app = create_app(settings)
    await app.start()
    try:
        event = upload_finished(pid)
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())
        created = DatablocksCreated.model_validate_json(
            await last_on(clean_js, subjects.DATABLOCKS_CREATED)
        )
        failed_event = upload_finished(empty_pid)
        await publish_event(
            clean_js, subjects.UPLOAD_FINISHED, failed_event, msg_id=failed_event.dedup_id()
        )
        failed = DatasetPackingFailed.model_validate_json(
            await last_on(clean_js, subjects.DATASET_PACKING_FAILED)
        )
    finally:
        await app.stop()
    stored = await (await clean_js.key_value(kv.DATABLOCKS)).get(kv.id_key(pid))
    consumer = await clean_js.consumer_info("ARCHIVER", "datablocker--upload_finished")

    assert created.pid == pid
    assert created.correlation_id == "corr-1"
    assert created.create_archiving_job is True
    assert [f.path for f in created.datablocks[0].data_file_list] == ["data/a.txt"]
    assert created.datablocks[0].data_file_list[0].chk == (
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    )
    assert DatablocksCreated.model_validate_json(stored.value) == created
    assert (failed.pid, failed.kind) == (empty_pid, "user")
    assert consumer.num_ack_pending == 0
    assert consumer.num_pending == 0
