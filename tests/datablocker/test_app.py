"""The datablocker running in-process on the real nats-server and moto S3."""

import io
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from pydantic import SecretStr

from contracts import kv, subjects
from contracts.events import (
    DatablocksCreated,
    DatasetArchived,
    DatasetPackingFailed,
    DeadLetter,
    UploadFinished,
)
from contracts.jobs import DatablockProgress, DatasetProgress, JobRecord
from devstack.processes import free_port
from runtime.kvstore import open_bucket
from runtime.lts import PosixLts
from runtime.provisioning import provision
from runtime.publishing import publish_event
from runtime.settings import LtsSettings, S3Settings
from services.datablocker.app import create_app
from services.datablocker.settings import DatablockerSettings
from tests.conftest import bus_settings
from tests.datablocker.landing_fixtures import minio_client, new_pid, put_file
from tests.datablocker.scicat_standin import ScicatStandin
from tests.polling import eventually
from tests.scraping import grew, scrape


async def last_on(js: JetStreamContext, subject: str, timeout_s: float = 10.0) -> bytes:
    """The data of the last message on `subject` in ARCHIVER, once there is one."""
    message = await eventually(
        lambda: js.get_last_msg("ARCHIVER", subject),
        f"a message on {subject}",
        done=lambda _message: True,
        ignoring=(NotFoundError,),
        timeout_s=timeout_s,
        interval_s=0.05,
    )
    return message.data


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
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server,
    scicat_standin: ScicatStandin,
    tmp_path: Path,
) -> None:
    """upload.finished in, datablocks.created out (and in KV); an empty one fails; both counted."""
    await provision(clean_js)
    s3 = minio_client(s3_server)
    pid, empty_pid = new_pid(), new_pid()
    put_file(s3, pid, "data/a.txt", b"hello world")
    scicat_standin.register(pid)
    scicat_standin.register(empty_pid)
    port = free_port()
    app = create_app(
        settings_for(
            nats_server_process.url, s3_server, scicat_standin, tmp_path, metrics_port=port
        )
    )
    await app.start()
    try:
        before = await scrape(port)
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
        after = await scrape(port)
    finally:
        await app.stop()
    stored = await (await clean_js.key_value(kv.DATABLOCKS)).get(kv.id_key(pid))
    failure = await (await clean_js.key_value(kv.PACKING_FAILURES)).get(kv.id_key(empty_pid))
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
    assert DatasetPackingFailed.model_validate_json(failure.value) == failed
    assert consumer.num_ack_pending == 0
    assert consumer.num_pending == 0
    outcomes = "archiver_packing_outcomes_total"
    assert grew(before, after, outcomes, outcome="created") == 1
    assert grew(before, after, outcomes, outcome="failed_user") == 1
    assert grew(before, after, "archiver_packed_bytes_total") == 10240
    assert grew(before, after, "archiver_scicat_requests_total", method="GET", outcome="2xx") >= 1


def settings_for(
    nats_url: str, s3_server, scicat: ScicatStandin, lts_root: Path, **overrides
) -> DatablockerSettings:
    return DatablockerSettings(
        nats=bus_settings(nats_url, "datablocker"),
        s3=S3Settings(
            endpoint=s3_server.endpoint,
            access_key=SecretStr(s3_server.access_key),
            secret_key=SecretStr(s3_server.secret_key),
        ),
        scicat=scicat.settings(),
        lts=LtsSettings(backend="posix", root=lts_root),
        **overrides,
    )


async def acked_through(js: JetStreamContext, durable: str, seq: int, timeout_s: float = 10.0):
    """The consumer's info once every message up to stream sequence `seq` is settled."""
    return await eventually(
        lambda: js.consumer_info("ARCHIVER", durable),
        f"{durable} settled through stream sequence {seq}",
        done=lambda info: info.ack_floor.stream_seq >= seq and info.num_ack_pending == 0,
        timeout_s=timeout_s,
        interval_s=0.05,
    )


async def packed_record(js: JetStreamContext, pid: str):
    """The dataset's `datablocks` KV entry, once its last block was packed."""
    bucket = await js.key_value(kv.DATABLOCKS)
    return await eventually(
        lambda: bucket.get(kv.id_key(pid)),
        f"datablocks of {pid} recorded",
        done=lambda _entry: True,
        ignoring=(KeyNotFoundError,),
        timeout_s=10,
    )


def landing_keys(s3, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/"
    return sorted(o.object_name for o in s3.list_objects("landing", prefix=prefix, recursive=True))


def archival_keys(s3, pid: str) -> list[str]:
    prefix = f"openem-network/datasets/{pid}/"
    return sorted(o.object_name for o in s3.list_objects("archival", prefix=prefix, recursive=True))


def verified_archive_job(job_id: str, created: DatablocksCreated) -> JobRecord:
    """The record an archive job leaves once every datablock of the dataset verified in LTS."""
    blocks = {
        b.archive_id: DatablockProgress(
            archive_id=b.archive_id, packed_size=b.packed_size, state="verified"
        )
        for b in created.datablocks
    }
    return JobRecord(
        job_id=job_id,
        job_type="archive",
        scicat_api="v4",
        status="finishedSuccessful",
        datasets={
            created.pid: DatasetProgress(pid=created.pid, state="succeeded", datablocks=blocks)
        },
        created_at=datetime.now(UTC),
    )


async def archived_in_lts(js: JetStreamContext, s3, lts_root: Path, pid: str, job_id: str):
    """The dataset's tars copied to LTS and a job record that verified them, as ltsmover leaves
    them; the packed record."""
    packed = await (await js.key_value(kv.DATABLOCKS)).get(kv.id_key(pid))
    created = DatablocksCreated.model_validate_json(packed.value)
    for block in created.datablocks:
        raw = s3.get_object("archival", block.archive_id).read()
        PosixLts(lts_root).write(block.archive_id, io.BytesIO(raw), len(raw))
    record = verified_archive_job(job_id, created)
    jobs = await open_bucket(js, kv.JOBS)
    await jobs.put(kv.id_key(job_id), record.model_dump_json().encode())
    return packed


async def test_dataset_archived_cleans_up_once_and_a_later_upload_finished_packs_nothing(
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server,
    scicat_standin: ScicatStandin,
    tmp_path: Path,
) -> None:
    """Landing and archival copies go, KV record kept; repeats are harmless; foreign refused."""
    await provision(clean_js)
    s3 = minio_client(s3_server)
    pid, other = new_pid(), new_pid()
    put_file(s3, pid, "data/a.txt", b"hello world")
    put_file(s3, other, "data/b.txt", b"other")
    scicat_standin.register(pid)
    scicat_standin.register(other)
    app = create_app(settings_for(nats_server_process.url, s3_server, scicat_standin, tmp_path))
    await app.start()
    try:
        for dataset in (pid, other):
            event = upload_finished(dataset)
            ack = await publish_event(
                clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id()
            )
        await acked_through(clean_js, "datablocker--upload_finished", ack.seq)
        await packed_record(clean_js, pid)
        await packed_record(clean_js, other)
        packed = await archived_in_lts(clean_js, s3, tmp_path, pid, "job-1")
        archive_ids = tuple(
            b.archive_id for b in DatablocksCreated.model_validate_json(packed.value).datablocks
        )
        other_archival = archival_keys(s3, other)
        archived = DatasetArchived(
            occurred_at=datetime.now(UTC), pid=pid, job_id="job-1", archive_ids=archive_ids
        )
        await publish_event(clean_js, subjects.DATASET_ARCHIVED, archived, msg_id="a-1")
        first = await publish_event(clean_js, subjects.DATASET_ARCHIVED, archived, msg_id="a-2")
        await acked_through(clean_js, "datablocker--dataset_archived", first.seq)
        again = upload_finished(pid)
        repeat = await publish_event(clean_js, subjects.UPLOAD_FINISHED, again, msg_id="again-1")
        await acked_through(clean_js, "datablocker--upload_finished", repeat.seq)
        foreign = DatasetArchived(
            occurred_at=datetime.now(UTC),
            pid=other,
            job_id="job-2",
            archive_ids=archive_ids,
        )
        refused = await publish_event(clean_js, subjects.DATASET_ARCHIVED, foreign, msg_id="f-1")
        await acked_through(clean_js, "datablocker--dataset_archived", refused.seq)
    finally:
        await app.stop()
    stream = await clean_js.stream_info("ARCHIVER")
    outcomes = [
        (await clean_js.get_msg("ARCHIVER", seq)).subject
        for seq in range(stream.state.first_seq, stream.state.last_seq + 1)
    ]
    kept = await (await clean_js.key_value(kv.DATABLOCKS)).get(kv.id_key(pid))
    letter = DeadLetter.model_validate_json(
        (await clean_js.get_last_msg("DEADLETTERS", "deadletter.datablocker")).data
    )

    assert landing_keys(s3, pid) == []
    assert archival_keys(s3, pid) == []
    assert landing_keys(s3, other) == [f"openem-network/datasets/{other}/raw_files/data/b.txt"]
    assert archival_keys(s3, other) == other_archival != []
    assert kept.value == packed.value
    assert outcomes.count(subjects.DATABLOCKS_CREATED) == 2
    assert subjects.DATASET_PACKING_FAILED not in outcomes
    assert letter.stream_seq == refused.seq
    assert "not its datablocks" in letter.reason
    assert (await clean_js.stream_info("DEADLETTERS")).state.messages == 1
