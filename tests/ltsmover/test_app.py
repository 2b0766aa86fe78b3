"""ltsmover and verifier in this process, on the real nats-server and moto S3, posix LTS."""

import asyncio
import io
import uuid
from pathlib import Path

from minio import Minio
from nats.js import JetStreamContext

from contracts import streams, subjects
from contracts.events import JobRequested
from devstack.processes import free_port
from runtime.lts import PosixLts
from runtime.publishing import publish_event
from services.ltsmover.app import create_app as create_ltsmover
from services.verifier.app import create_app as create_verifier
from tests.ltsmover.service_fixtures import (
    events,
    finished,
    job_record,
    job_request,
    mover_settings,
    record_datablocks,
    running,
    verifier_settings,
)
from tests.polling import eventually
from tests.scraping import grew, scrape

VERIFIED = streams.LTSMOVER_LTS_VERIFIED.durable


async def pack(js: JetStreamContext, s3: Minio, pid: str, contents: list[bytes]) -> list[bytes]:
    """Put real tars in the archival bucket and their record in KV, as the datablocker does."""

    def store(archive_id: str, raw: bytes) -> None:
        s3.put_object("archival", archive_id, io.BytesIO(raw), len(raw))

    blocks = [{f"file{n}.dat": data} for n, data in enumerate(contents)]
    return await record_datablocks(js, pid, blocks, store)


def archive_job(job_id: str, *pids: str) -> JobRequested:
    return job_request("archive", job_id, *pids)


async def test_a_job_with_one_unpacked_dataset_ends_with_dataset_errors(
    world, nats_server_process, s3_server
) -> None:
    """The packed dataset is archived byte-identical, the unpacked one fails; both counted."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    good, bad, job_id = f"20.500/good-{tag}", f"20.500/bad-{tag}", f"job-{tag}"
    raws = await pack(js, s3, good, [b"a" * 3000, b"b" * 90000])
    url = nats_server_process.url
    port = free_port()

    async with (
        running(create_ltsmover(mover_settings(url, s3_server, root, metrics_port=port))),
        running(create_verifier(verifier_settings(url, s3_server, root))),
    ):
        before = await scrape(port)
        job = archive_job(job_id, good, bad)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())
        record = await finished(js, job_id)
        await asyncio.sleep(0.2)
        after = await scrape(port)
    log = await events(js, job_id)

    assert record.status == "finishedWithDatasetErrors"
    assert record.datasets[good].state == "succeeded"
    assert record.datasets[bad].state == "failed"
    assert record.datasets[bad].error_kind == "user"
    slug = good.replace("/", "-")
    for n, raw in enumerate(raws):
        copy = root / f"openem-network/datasets/{good}/datablocks/{slug}_{n}.tar"
        assert copy.read_bytes() == raw
    lifecycles = {
        (body["pid"], body["lifecycle"].get("archiveStatusMessage")): {
            k: v for k, v in body["lifecycle"].items() if v is not None
        }
        for subject, body in log
        if subject == "dataset.lifecycle"
    }
    assert lifecycles[(good, "started")] == {"archivable": False, "archiveStatusMessage": "started"}
    assert lifecycles[(good, "datasetOnArchiveDisk")] == {
        "archivable": False,
        "retrievable": True,
        "archiveStatusMessage": "datasetOnArchiveDisk",
    }
    assert lifecycles[(bad, "missingFilesError")]["archivable"] is True
    counts = {s: [x for x, _ in log].count(s) for s, _ in log}
    assert counts == {
        "job.requested.archive": 1,
        "job.status": 2,
        "dataset.lifecycle": 4,
        "lts.moved": 2,
        "lts.verified": 2,
        "dataset.archived": 1,
    }
    statuses = [b["status_code"] for s, b in log if s == "job.status"]
    assert statuses == ["inProgress", "finishedWithDatasetErrors"]
    archived = next(b for s, b in log if s == "dataset.archived")
    assert archived["pid"] == good
    assert len(archived["archive_ids"]) == 2
    jobs, datasets = "archiver_jobs_finished_total", "archiver_datasets_finished_total"
    assert grew(before, after, jobs, job_type="archive", status="finishedWithDatasetErrors") == 1
    assert grew(before, after, datasets, job_type="archive", state="succeeded") == 1
    assert grew(before, after, datasets, job_type="archive", state="failed", error_kind="user") == 1
    assert grew(before, after, "archiver_copied_bytes_total") == 10240 + 92160
    assert grew(before, after, "archiver_messages_handled_total", consumer=VERIFIED) == 2


async def test_a_corrupted_copy_is_recopied_and_then_verifies(
    world, nats_server_process, s3_server
) -> None:
    """A byte flipped in LTS before verification fails the check; attempt 1 is good."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/flip-{tag}", f"job-{tag}"
    (raw,) = await pack(js, s3, pid, [b"z" * 20000])
    copy = root / f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar"
    url = nats_server_process.url

    async with running(create_ltsmover(mover_settings(url, s3_server, root))):
        job = archive_job(job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())

        async def moved() -> bool:
            return any(s == "lts.moved" for s, _ in await events(js, job_id))

        await eventually(moved, f"lts.moved for job {job_id}", timeout_s=15.0, interval_s=0.05)
        corrupted = bytearray(copy.read_bytes())
        corrupted[600] ^= 0xFF
        copy.write_bytes(bytes(corrupted))
        async with running(create_verifier(verifier_settings(url, s3_server, root))):
            record = await finished(js, job_id)
    log = await events(js, job_id)

    assert record.status == "finishedSuccessful"
    assert record.datasets[pid].datablocks[copy.relative_to(root).as_posix()].attempt == 1
    assert copy.read_bytes() == raw
    verdicts = [(b["attempt"], b["ok"]) for s, b in log if s == "lts.verified"]
    assert verdicts == [(0, False), (1, True)]
    first = next(b for s, b in log if s == "lts.verified")
    assert "member checksum mismatch: file0.dat" in first["reason"]


async def test_a_second_job_for_an_archived_dataset_does_not_copy_again(
    world, nats_server_process, s3_server
) -> None:
    """The same dataset in two jobs, and the first job re-sent: one LTS copy, both succeed."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, first_id, second_id = f"20.500/twice-{tag}", f"job-a-{tag}", f"job-b-{tag}"
    await pack(js, s3, pid, [b"q" * 5000])
    url = nats_server_process.url

    async with (
        running(create_ltsmover(mover_settings(url, s3_server, root))),
        running(create_verifier(verifier_settings(url, s3_server, root))),
    ):
        first = archive_job(first_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, first, msg_id=first.dedup_id())
        await finished(js, first_id)
        copies = [p for p in root.rglob("*") if p.is_file()]
        written = copies[0].stat().st_mtime_ns
        second = archive_job(second_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, second, msg_id=second.dedup_id())
        # The first job delivered again (a redelivery, not a duplicate publish).
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, first, msg_id=f"again-{tag}")
        record = await finished(js, second_id)
        await asyncio.sleep(0.3)
    first_record = await job_record(js, first_id)

    assert record.status == "finishedSuccessful"
    assert first_record is not None
    assert first_record.status == "finishedSuccessful"
    (block,) = record.datasets[pid].datablocks.values()
    assert block.copied is False
    assert [p for p in root.rglob("*") if p.is_file()] == copies
    assert copies[0].stat().st_mtime_ns == written
    first_log = await events(js, first_id)
    assert [s for s, _ in first_log].count("lts.moved") == 1
    assert [s for s, _ in first_log].count("job.status") == 2


async def test_a_write_waits_for_free_space_and_then_archives(
    world, nats_server_process, s3_server
) -> None:
    """Below min_free_percent the dataset says it waits; once space returns it is archived."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/full-{tag}", f"job-{tag}"
    await pack(js, s3, pid, [b"f" * 4000])
    gauge = {"free": 0.01}
    lts = PosixLts(root, free_fraction_reader=lambda: gauge["free"])
    settings = mover_settings(nats_server_process.url, s3_server, root, min_free_percent=5)

    async with (
        running(create_ltsmover(settings, lts=lts)),
        running(create_verifier(verifier_settings(nats_server_process.url, s3_server, root))),
    ):
        job = archive_job(job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())

        async def waiting_for_space() -> bool:
            record = await job_record(js, job_id)
            return record is not None and record.datasets[pid].state == "waitingForSpace"

        await eventually(
            waiting_for_space, "the dataset waits for space", timeout_s=15.0, interval_s=0.05
        )
        waiting = await job_record(js, job_id)
        gauge["free"] = 0.5
        record = await finished(js, job_id)

    assert waiting is not None
    assert waiting.datasets[pid].message == (
        "Waiting for LTS free space: 1.0% free, 5.0% needed (up to 3600 s)"
    )
    assert record.status == "finishedSuccessful"
    assert record.datasets[pid].message is None


async def test_a_share_that_stays_full_fails_the_dataset_and_writes_nothing(
    world, nats_server_process, s3_server
) -> None:
    """Past free_space_timeout_s: scheduleArchiveJobFailed with the reason, nothing in LTS."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/nospace-{tag}", f"job-{tag}"
    await pack(js, s3, pid, [b"n" * 4000])
    lts = PosixLts(root, free_fraction_reader=lambda: 0.01)
    settings = mover_settings(
        nats_server_process.url, s3_server, root, min_free_percent=5, free_space_timeout_s=0.3
    )

    async with running(create_ltsmover(settings, lts=lts)):
        job = archive_job(job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())
        record = await finished(js, job_id)
    log = await events(js, job_id)

    assert record.status == "finishedUnsuccessful"
    assert record.datasets[pid].error == (
        "LTS free space stayed at 1.0%, below the 5.0% minimum, for 0.3 s"
    )
    failed = [b["lifecycle"] for s, b in log if s == "dataset.lifecycle"][-1]
    assert failed["archiveStatusMessage"] == "scheduleArchiveJobFailed"
    assert failed["archivable"] is True
    assert [p for p in root.rglob("*") if p.is_file()] == []


async def test_a_copy_failing_its_last_allowed_check_fails_the_dataset_and_is_left_in_place(
    world, nats_server_process, s3_server
) -> None:
    """max_copy_attempts=1: the dataset fails; the copy is not removed, only a verified re-copy
    of a later job may replace it."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/once-{tag}", f"job-{tag}"
    await pack(js, s3, pid, [b"o" * 20000])
    copy = root / f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}_0.tar"
    url = nats_server_process.url

    async with running(create_ltsmover(mover_settings(url, s3_server, root, max_copy_attempts=1))):
        job = archive_job(job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())

        async def moved() -> bool:
            return any(s == "lts.moved" for s, _ in await events(js, job_id))

        await eventually(moved, "lts.moved", timeout_s=15.0, interval_s=0.05)
        corrupted = bytearray(copy.read_bytes())
        corrupted[600] ^= 0xFF
        copy.write_bytes(bytes(corrupted))
        async with running(create_verifier(verifier_settings(url, s3_server, root))):
            record = await finished(js, job_id)
    log = await events(js, job_id)

    assert copy.read_bytes() == bytes(corrupted)
    assert record.status == "finishedUnsuccessful"
    block = record.datasets[pid].datablocks[copy.relative_to(root).as_posix()]
    assert (block.state, block.attempt) == ("failed", 0)
    assert "member checksum mismatch: file0.dat" in (block.reason or "")
    error = record.datasets[pid].error or ""
    assert error.startswith(f"Datablock {block.archive_id} failed verification in LTS 1 time(s): ")
    assert [s for s, _ in log].count("lts.moved") == 1


class OfflineTape:
    """Every open fails with EAGAIN, as a share whose tape is not mounted."""

    def __call__(self, path: Path):
        raise BlockingIOError(11, "Resource temporarily unavailable")


async def test_a_failed_recheck_after_the_archival_copy_is_gone_keeps_the_only_copy(
    world, nats_server_process, s3_server
) -> None:
    """An archived block whose tape is offline fails its re-check; with nothing left to copy
    from, the dataset fails and the LTS copy stays byte for byte."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/only-{tag}", f"job-{tag}"
    (raw,) = await pack(js, s3, pid, [b"k" * 20000])
    archive_id = f"openem-network/datasets/{pid}/datablocks/20.500-only-{tag}_0.tar"
    PosixLts(root).write(archive_id, io.BytesIO(raw), len(raw))
    s3.remove_object("archival", archive_id)  # cleaned up after the first archive job
    url = nats_server_process.url
    offline = PosixLts(root, opener=OfflineTape())

    async with (
        running(create_ltsmover(mover_settings(url, s3_server, root))),
        running(create_verifier(verifier_settings(url, s3_server, root), lts=offline)),
    ):
        job = archive_job(job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())
        record = await finished(js, job_id)
    log = await events(js, job_id)

    assert (root / archive_id).read_bytes() == raw
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        archive_id
    ]
    assert record.status == "finishedUnsuccessful"
    assert [(b["attempt"], b["ok"]) for s, b in log if s == "lts.verified"] == [(0, False)]
    assert "was kept as it is" in (record.datasets[pid].error or "")
    assert "dataset.archived" not in [s for s, _ in log]


async def test_a_recopy_that_fails_its_check_never_replaces_the_copy(
    world, nats_server_process, s3_server
) -> None:
    """Copy and re-copy both fail (the archival tar rotted too): the first copy stays where it
    is, untouched, and the failed re-copy beside it is removed."""
    js, s3, root = world
    tag = uuid.uuid4().hex[:8]
    pid, job_id = f"20.500/twofold-{tag}", f"job-{tag}"
    (raw,) = await pack(js, s3, pid, [b"t" * 20000])
    archive_id = f"openem-network/datasets/{pid}/datablocks/20.500-twofold-{tag}_0.tar"
    copy = root / archive_id
    rotten = bytearray(raw)
    rotten[600] ^= 0xFF
    url = nats_server_process.url

    async with running(create_ltsmover(mover_settings(url, s3_server, root, max_copy_attempts=2))):
        job = archive_job(job_id, pid)
        await publish_event(js, subjects.JOB_REQUESTED_ARCHIVE, job, msg_id=job.dedup_id())

        async def moved() -> bool:
            return any(s == "lts.moved" for s, _ in await events(js, job_id))

        await eventually(moved, "lts.moved", timeout_s=15.0, interval_s=0.05)
        first = bytearray(copy.read_bytes())
        first[900] ^= 0xFF
        copy.write_bytes(bytes(first))
        s3.put_object("archival", archive_id, io.BytesIO(bytes(rotten)), len(rotten))
        async with running(create_verifier(verifier_settings(url, s3_server, root))):
            record = await finished(js, job_id)
    log = await events(js, job_id)

    assert record.status == "finishedUnsuccessful"
    assert [(b["attempt"], b["ok"]) for s, b in log if s == "lts.verified"] == [
        (0, False),
        (1, False),
    ]
    moved_to = [b["location"] for s, b in log if s == "lts.moved"]
    assert moved_to[0] == str(copy)
    assert "/.recopy-" in moved_to[1]
    assert moved_to[1].endswith(f"/20.500-twofold-{tag}_0.tar")
    assert copy.read_bytes() == bytes(first)
    assert [p for p in root.rglob("*") if p.is_file()] == [copy]
    assert not [p for p in root.rglob(".recopy-*")]
