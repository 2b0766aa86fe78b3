"""One dataset packed by several datablocker instances at once, on the real nats-server and moto.

Each instance is the service app in this process under its own name; the packing record in
KV says which instance packed which block, the ARCHIVER stream what was announced.
"""

import asyncio
import io
import os
import tarfile
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext
from pydantic import SecretStr

from contracts import kv, objectkeys, subjects
from contracts.events import (
    DatablockRequested,
    DatablocksCreated,
    DatasetPackingFailed,
    UploadFinished,
)
from runtime.kvstore import KvRecords, open_bucket
from runtime.provisioning import provision
from runtime.publishing import publish, publish_event
from runtime.s3_extras import list_multipart_uploads
from runtime.settings import S3Settings, ScicatSettings
from services.datablocker.app import create_app
from services.datablocker.blocks import pack_requested_block
from services.datablocker.bootstrap import packing_limits
from services.datablocker.packing import Buckets, Packer
from services.datablocker.plans import Planned, plan_upload
from services.datablocker.results import PackedResults, PackingRecord, PackingRecords
from services.datablocker.settings import DatablockerSettings
from tests.conftest import bus_settings
from tests.datablocker.landing_fixtures import MiB, minio_client, new_pid, put_file
from tests.datablocker.scicat_standin import ScicatStandin
from tests.datablocker.test_app import settings_for
from tests.polling import eventually

FILES = {f"frames/f{n}.dat": bytes([65 + n]) * 10 for n in range(6)}
"""Six 10-byte files: with a 10-byte target, six blocks of one file each."""


def upload_finished(pid: str) -> UploadFinished:
    return UploadFinished(
        occurred_at=datetime.now(UTC),
        pid=pid,
        owner_group="group1",
        create_archiving_job=False,
        source="finalize",
    )


async def subjects_of(js: JetStreamContext, pid: str) -> list[str]:
    """The subjects of every ARCHIVER message about `pid`, in stream order."""
    info = await js.stream_info("ARCHIVER")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg("ARCHIVER", seq)
        if f'"pid":"{pid}"' in message.data.decode():
            found.append(message.subject)
    return found


async def packing_record(js: JetStreamContext, pid: str) -> PackingRecord | None:
    return await KvRecords(await open_bucket(js, kv.PACKING), PackingRecord).get(kv.id_key(pid))


def member_bytes(s3, archive_id: str) -> bytes:
    """The bytes of a one-member tar's member."""
    data = io.BytesIO(s3.get_object("archival", archive_id).read())
    with tarfile.open(fileobj=data) as tar:
        return tar.extractfile(tar.getmembers()[0]).read()  # type: ignore[union-attr]


def slowed(delay_s: float, packed: Counter[int]):
    """The block packer, slowed so work spreads; counts the packs of each block."""

    async def pack(event: DatablockRequested, packer: Packer, *, max_payload: int | None):
        packed[event.index] += 1
        await asyncio.sleep(delay_s)
        return await pack_requested_block(event, packer, max_payload=max_payload)

    return pack


def killed_mid_tar(block: int, packed: Counter[int], s3_extras):
    """The block packer of an instance that dies while block `block`'s tar is being uploaded
    (its handler cancelled once a multipart upload of it is open); dead, it takes no work
    (every further message goes back at once)."""
    dead = asyncio.Event()

    async def pack(event: DatablockRequested, packer: Packer, *, max_payload: int | None):
        if dead.is_set():
            raise asyncio.CancelledError
        packed[event.index] += 1
        work = asyncio.create_task(pack_requested_block(event, packer, max_payload=max_payload))
        if event.index != block:
            return await work
        archive_id = objectkeys.archive_id(event.pid, event.index)
        await eventually(
            lambda: list(list_multipart_uploads(s3_extras, "archival", archive_id)),
            "the block's tar upload under way",
            timeout_s=20,
            interval_s=0.01,
        )
        work.cancel()
        dead.set()
        raise asyncio.CancelledError

    return pack


async def test_blocks_of_one_dataset_are_packed_by_two_instances_and_announced_once(
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server,
    scicat_standin: ScicatStandin,
    tmp_path: Path,
) -> None:
    """Six blocks, two instances: both pack some; one datablocks.created with blocks in order;
    redelivered block requests and a repeated upload.finished announce nothing more."""
    await provision(clean_js)
    s3 = minio_client(s3_server)
    pid = new_pid()
    for name, data in FILES.items():
        put_file(s3, pid, name, data)
    scicat_standin.register(pid)
    settings = settings_for(
        nats_server_process.url, s3_server, scicat_standin, tmp_path,
        target_size_bytes=10, max_parallel_blocks=1,
    )  # fmt: skip
    packed: Counter[int] = Counter()
    async with AsyncExitStack() as stack:
        for name in ("one", "two"):
            app = create_app(settings, instance=name, pack=slowed(0.3, packed))
            await app.start()
            stack.push_async_callback(app.stop)
        event = upload_finished(pid)
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())
        record = await eventually(
            lambda: packing_record(clean_js, pid),
            "the dataset announced",
            done=lambda r: r is not None and r.announced,
            timeout_s=20,
        )
        requests = [
            DatablockRequested.model_validate_json((await clean_js.get_msg("ARCHIVER", seq)).data)
            for seq in range(1, 1 + (await clean_js.stream_info("ARCHIVER")).state.last_seq)
            if (await clean_js.get_msg("ARCHIVER", seq)).subject == subjects.DATABLOCK_REQUESTED
        ]
        for request in requests:  # as if redelivered after the dedup window
            await publish_event(
                clean_js, subjects.DATABLOCK_REQUESTED, request, msg_id=f"again-{request.index}"
            )
        again = upload_finished(pid)
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, again, msg_id="again-upload")
        await eventually(
            lambda: clean_js.consumer_info("ARCHIVER", "datablocker--datablock_requested"),
            "every block request settled",
            done=lambda info: info.num_pending == 0 and info.num_ack_pending == 0,
            timeout_s=20,
        )
        await eventually(
            lambda: clean_js.consumer_info("ARCHIVER", "datablocker--upload_finished"),
            "every upload.finished settled",
            done=lambda info: info.num_pending == 0 and info.num_ack_pending == 0,
            timeout_s=20,
        )
    created = DatablocksCreated.model_validate_json(
        (await clean_js.get_last_msg("ARCHIVER", subjects.DATABLOCKS_CREATED)).data
    )
    flat = pid.replace("/", "-")

    assert set(record.packed_by.values()) == {"one", "two"}
    assert (await subjects_of(clean_js, pid)).count(subjects.DATABLOCKS_CREATED) == 1
    assert [b.archive_id.rsplit("/", 1)[1] for b in created.datablocks] == [
        f"{flat}_{n}.tar" for n in range(6)
    ]
    assert [[f.path for f in b.data_file_list] for b in created.datablocks] == [
        [name] for name in FILES
    ]
    assert packed == dict.fromkeys(range(6), 2)  # the repeats came, found their block packed
    assert [member_bytes(s3, b.archive_id) for b in created.datablocks] == list(FILES.values())


async def test_an_instance_killed_mid_tar_leaves_only_that_block_to_redo(
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server,
    s3_extras,
    scicat_standin: ScicatStandin,
    tmp_path: Path,
) -> None:
    """Block 2 (30 MiB) is cut off mid-upload in the first instance: the other instance packs
    block 2 again, every other block is packed once, no upload is left open, one
    datablocks.created."""
    await provision(clean_js)
    s3 = minio_client(s3_server)
    pid = new_pid()
    files = {**FILES, "frames/f2.dat": os.urandom(30 * MiB)}
    for name, data in files.items():
        put_file(s3, pid, name, data)
    scicat_standin.register(pid)
    settings = settings_for(
        nats_server_process.url, s3_server, scicat_standin, tmp_path,
        target_size_bytes=10, max_parallel_blocks=1, part_size_bytes=5 * MiB,
    )  # fmt: skip
    packed: Counter[int] = Counter()
    async with AsyncExitStack() as stack:
        for name, pack in (
            ("killed", killed_mid_tar(2, packed, s3_extras)),
            ("steady", slowed(0.1, packed)),
        ):
            app = create_app(settings, instance=name, pack=pack)
            await app.start()
            stack.push_async_callback(app.stop)
        event = upload_finished(pid)
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())
        record = await eventually(
            lambda: packing_record(clean_js, pid),
            "the dataset announced",
            done=lambda r: r is not None and r.announced,
            timeout_s=40,
        )
    prefix = f"openem-network/datasets/{pid}/datablocks/"

    assert record.packed_by[2] == "steady"
    assert packed == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1, 5: 1}
    assert (await subjects_of(clean_js, pid)).count(subjects.DATABLOCKS_CREATED) == 1
    assert member_bytes(s3, objectkeys.archive_id(pid, 2)) == files["frames/f2.dat"]
    assert list(list_multipart_uploads(s3_extras, "archival", prefix)) == []


async def test_a_corrupt_file_in_one_block_fails_the_dataset_once_and_keeps_no_block(
    clean_js: JetStreamContext,
    nats_server_process,
    s3_server,
    scicat_standin: ScicatStandin,
    tmp_path: Path,
) -> None:
    """Block 3's file does not match its checksum: one dataset.packing_failed naming it, no
    datablocks.created, and no tar of the dataset left, whichever instance packed what."""
    await provision(clean_js)
    s3 = minio_client(s3_server)
    pid = new_pid()
    for name, data in FILES.items():
        put_file(s3, pid, name, data, checksum_of=b"else" if name.endswith("f3.dat") else None)
    scicat_standin.register(pid)
    settings = settings_for(
        nats_server_process.url, s3_server, scicat_standin, tmp_path,
        target_size_bytes=10, max_parallel_blocks=1,
    )  # fmt: skip
    packed: Counter[int] = Counter()
    async with AsyncExitStack() as stack:
        for name in ("one", "two"):
            app = create_app(settings, instance=name, pack=slowed(0.1, packed))
            await app.start()
            stack.push_async_callback(app.stop)
        event = upload_finished(pid)
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())
        await eventually(
            lambda: packing_record(clean_js, pid),
            "the failure announced",
            done=lambda r: r is not None and r.announced,
            timeout_s=20,
        )
        await eventually(
            lambda: clean_js.consumer_info("ARCHIVER", "datablocker--datablock_requested"),
            "every block request settled",
            done=lambda info: info.num_pending == 0 and info.num_ack_pending == 0,
            timeout_s=20,
        )
    failed = DatasetPackingFailed.model_validate_json(
        (await clean_js.get_last_msg("ARCHIVER", subjects.DATASET_PACKING_FAILED)).data
    )
    prefix = f"openem-network/datasets/{pid}/datablocks/"
    seen = await subjects_of(clean_js, pid)

    assert seen.count(subjects.DATASET_PACKING_FAILED) == 1
    assert subjects.DATABLOCKS_CREATED not in seen
    assert (failed.pid, failed.kind) == (pid, "user")
    assert failed.reason.startswith("file 'frames/f3.dat': SHA-256 ")
    assert list(s3.list_objects("archival", prefix=prefix, recursive=True)) == []


async def test_an_announcer_that_died_before_marking_is_repeated_with_the_identical_event(
    clean_js: JetStreamContext, s3_server, s3_extras
) -> None:
    """The last block handled twice before `announced` is marked: the same datablocks.created
    both times, which the stream stores once; once marked, nothing more is announced."""
    await provision(clean_js)
    s3 = minio_client(s3_server)
    pid = new_pid()
    put_file(s3, pid, "a.txt", b"hello world")
    settings = DatablockerSettings(
        nats=bus_settings("nats://127.0.0.1:9", "datablocker"),  # only the limits are used
        s3=S3Settings(
            endpoint=s3_server.endpoint,
            access_key=SecretStr(s3_server.access_key),
            secret_key=SecretStr(s3_server.secret_key),
        ),
        scicat=ScicatSettings(url="http://127.0.0.1:9/api", username="u", password=SecretStr("p")),
    )
    packer = Packer(
        s3=s3,
        s3_extras=s3_extras,
        buckets=Buckets(landing="landing", archival="archival"),
        limits=packing_limits(settings),
        results=PackedResults(clean_js),
        records=PackingRecords(clean_js),
        origdatablocks=None,
        completion_marker=None,
        instance="solo",
    )
    planned = await plan_upload(upload_finished(pid), packer, max_payload=None)
    assert isinstance(planned, Planned)
    (request,) = planned.requests

    first = await pack_requested_block(request, packer, max_payload=None)
    second = await pack_requested_block(request, packer, max_payload=None)
    acks = [await publish(clean_js, a.subject, a.event) for a in (first, second) if a]
    await packer.records.mark_announced(pid, request.plan_id)
    third = await pack_requested_block(request, packer, max_payload=None)

    assert first is not None
    assert second is not None
    assert first.event.model_dump_json() == second.event.model_dump_json()
    assert [a.duplicate for a in acks] == [None, True]
    assert third is None
