"""Every subject a service consumes receives garbage; the whole stack runs as real processes.

Garbage is dead-lettered (`deadletter.<service>`) with a reason a person can act
on, within seconds rather than after the hour-long retry schedule, and every
service keeps consuming: a valid archive chain afterwards goes through.
"""

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from nats.js import JetStreamContext

from contracts import streams, subjects
from contracts.events import (
    Datablock,
    DatablocksCreated,
    DataFile,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    DeadLetter,
    JobDataset,
    JobRequested,
    JobStatusChanged,
    LtsMoved,
    LtsVerified,
    UploadFinished,
)
from contracts.scicat import LifecyclePatch
from devstack.processes import tool_path
from devstack.stack import DevStack
from runtime.publishing import publish_event
from tests.badinput.stack_helpers import Scicat, jetstream
from tests.deadletters import dead_letters
from tests.polling import eventually

SHA = "ab" * 32
MARKER = ".archiver-upload-complete"
MAX_PAYLOAD = 8 * 1024 * 1024

# One concrete subject per consumer (job.requested.> is consumed as a whole).
SUBJECT_OF = {
    spec.durable: (
        subjects.JOB_REQUESTED_ARCHIVE
        if spec.filter_subject == subjects.JOB_REQUESTED_ALL
        else spec.filter_subject
    )
    for spec in streams.CONSUMERS
}


def _now() -> datetime:
    return datetime.now(UTC)


def _datablock(archive_id: str) -> Datablock:
    return Datablock(
        archive_id=archive_id,
        size=5,
        packed_size=10240,
        tar_sha256=SHA,
        data_file_list=(DataFile(path="a.txt", size=5, time=_now(), chk=SHA),),
    )


def _marker_notification(pid: str) -> bytes:
    key = f"openem-network/datasets/{pid}/raw_files/{MARKER}"
    record = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "landing"}, "object": {"key": key, "size": 0}},
    }
    return json.dumps(
        {"EventName": "s3:ObjectCreated:Put", "Key": f"landing/{key}", "Records": [record]}
    ).encode()


async def _letters_for(
    js: JetStreamContext, wanted: set[tuple[str, int]], timeout_s: float = 30.0
) -> dict[tuple[str, int], DeadLetter]:
    """The dead letters of these (stream, stream sequence) pairs, once all have arrived."""

    async def probe() -> dict[tuple[str, int], DeadLetter] | None:
        found = {(d.stream, d.stream_seq): d for d in await dead_letters(js)}
        return {k: found[k] for k in wanted} if wanted <= set(found) else None

    return await eventually(
        probe,
        f"dead letters of {sorted(wanted)}",
        timeout_s=timeout_s,
        interval_s=0.2,
    )


async def test_undecodable_wrong_schema_and_huge_messages_are_dead_lettered_at_once(
    stack: DevStack,
) -> None:
    """Not JSON, the wrong schema and a ~8 MB body: one dead letter each, first delivery."""
    huge = json.dumps({"padding": "x" * (MAX_PAYLOAD - 64 * 1024)}).encode()
    garbage = {
        "not json": b"\x00\xff not json {",
        "wrong schema": json.dumps({"pid": "x", "surprise": 1}).encode(),
        "huge": huge,
    }
    async with jetstream(stack) as js:
        published: dict[tuple[str, int], tuple[str, str]] = {}
        for spec in streams.CONSUMERS:
            for kind, body in garbage.items():
                ack = await js.publish(SUBJECT_OF[spec.durable], body, timeout=10)
                published[(ack.stream, ack.seq)] = (spec.service, kind)

        letters = await _letters_for(js, set(published))

    for key, (service, kind) in published.items():
        letter = letters[key]
        assert letter.service == service, kind
        assert letter.reason == "message does not match its contract", kind
        assert letter.deliveries == 1, kind
        assert letter.detail, kind
        assert len(letter.detail) < 5000, kind  # never the payload itself


async def test_events_for_unknown_datasets_and_jobs_end_in_a_dead_letter_or_a_reported_failure(
    stack: DevStack,
) -> None:
    """Each unknown target gets its service's deliberate answer, never an hour of retries.

    - minio.events (gateway): a marker of a dataset SciCat does not know -> dead letter.
    - upload.finished (datablocker): nothing to pack is the user's failure, reported as
      dataset.packing_failed; scicat_sync then cannot tell SciCat (unknown dataset) -> dead letter.
    - job.requested (ltsmover): the job is carried out and fails the dataset (no datablocks);
      its job.status reaches scicat_sync, which SciCat refuses (400 Invalid job id) -> dead letter.
    - lts.moved (verifier): a block that is not in LTS gets a failed verdict (its job); an
      archive id escaping the LTS root is refused -> dead letter.
    - lts.verified (ltsmover): a verdict for a job with no record -> dead letter.
    - datablocks.created / dataset.lifecycle / job.status / dataset.packing_failed
      (scicat_sync): no record of the producer bears them out -> dead letter, nothing written;
      the ones the chain above produces (recorded) reach SciCat, whose 4xx is dead-lettered.
    """
    pid = "20.500.11935/unknown-dataset-badinput"
    job = "unknown-job-badinput"
    block_id = "openem-network/datasets/20.500.11935/unknown/datablocks/u_0.tar"
    now = _now()
    async with jetstream(stack) as js:
        seqs: dict[str, int] = {}

        async def send(name: str, subject: str, event: object) -> None:
            ack = await publish_event(js, subject, event, msg_id=f"badinput:{name}")  # type: ignore[arg-type]
            seqs[name] = ack.seq

        seqs["marker"] = (await js.publish(subjects.MINIO_EVENTS, _marker_notification(pid))).seq
        common = {"occurred_at": now, "pid": pid}
        await send(
            "upload",
            subjects.UPLOAD_FINISHED,
            UploadFinished(
                **common, owner_group="group1", create_archiving_job=False, source="finalize"
            ),
        )
        await send(
            "job",
            subjects.JOB_REQUESTED_ARCHIVE,
            JobRequested(
                occurred_at=now,
                job_id=job,
                job_type="archive",
                datasets=(JobDataset(pid=pid),),
                scicat_api="v4",
            ),
        )
        moved = {"occurred_at": now, "job_type": "archive", "pid": pid, "attempt": 0}
        await send(
            "moved-missing",
            subjects.LTS_MOVED,
            LtsMoved(**moved, job_id="no-such-job", datablock=_datablock(block_id), location="x"),
        )
        await send(
            "moved-escape",
            subjects.LTS_MOVED,
            LtsMoved(**moved, job_id=job, datablock=_datablock("../../etc/passwd"), location="x"),
        )
        await send(
            "verified",
            subjects.LTS_VERIFIED,
            LtsVerified(**moved, job_id="never-ran", archive_id=block_id, location="x", ok=True),
        )
        await send(
            "datablocks",
            subjects.DATABLOCKS_CREATED,
            DatablocksCreated(
                **common,
                datablocks=(_datablock(block_id),),
                create_archiving_job=False,
                owner_group="group1",
            ),
        )
        await send(
            "lifecycle",
            subjects.DATASET_LIFECYCLE,
            DatasetLifecycleChanged(
                occurred_at=now,
                pid=f"{pid}-lifecycle",
                job_id="no-such-lifecycle-job",
                lifecycle=LifecyclePatch(archive_status_message="started"),
            ),
        )
        await send(
            "status",
            subjects.JOB_STATUS,
            JobStatusChanged(
                occurred_at=now, job_id="no-such-scicat-job", status_code="inProgress",
                status_message="working",
            ),
        )  # fmt: skip
        await send(
            "packing",
            subjects.DATASET_PACKING_FAILED,
            DatasetPackingFailed(
                occurred_at=now, pid=f"{pid}-packing", kind="user", reason="nothing there"
            ),
        )

        def of(stream: str, name: str) -> tuple[str, int]:
            return (stream, seqs[name])

        direct = {
            of("MINIO", "marker"),
            *(
                of("ARCHIVER", n)
                for n in (
                    "moved-escape",
                    "verified",
                    "datablocks",
                    "lifecycle",
                    "status",
                    "packing",
                )
            ),
        }
        letters = await _letters_for(js, direct)

        def verdict_dead_lettered(letters_now: list[DeadLetter]) -> list[DeadLetter]:
            return [
                d
                for d in letters_now
                if d.service == "ltsmover"
                and d.subject == subjects.LTS_VERIFIED
                and "no-such-job" in d.reason
            ]

        chained = await eventually(
            lambda: _chained(js, pid, job, verdict_dead_lettered),
            f"the follow-up events of {pid}'s unknown-target chain",
            timeout_s=30,
            interval_s=0.2,
        )
        all_letters = await dead_letters(js)

    assert letters[of("MINIO", "marker")].service == "gateway"
    assert pid in letters[of("MINIO", "marker")].reason
    escape = letters[of("ARCHIVER", "moved-escape")]
    assert (escape.service, escape.deliveries) == ("verifier", 1)
    assert "../../etc/passwd" in escape.reason
    verified = letters[of("ARCHIVER", "verified")]
    assert verified.service == "ltsmover"
    assert "never-ran" in verified.reason
    for name in ("datablocks", "lifecycle", "status", "packing"):
        letter = letters[of("ARCHIVER", name)]
        assert letter.service == "scicat_sync", name
        assert letter.deliveries == 1, name
        assert letter.reason.endswith("nothing was written to SciCat"), (name, letter.reason)
    # Not dead-lettered where the service answered with a deliberate outcome instead.
    for name in ("upload", "job", "moved-missing"):
        assert not [d for d in all_letters if d.stream_seq == seqs[name] and d.stream == "ARCHIVER"]
    assert chained["packing_failed"]["kind"] == "user"
    assert "no files" in chained["packing_failed"]["reason"]
    assert chained["job_final"]["status_code"] == "finishedUnsuccessful"
    assert "no datablocks" in chained["job_final"]["status_message"]


async def _chained(js: JetStreamContext, pid: str, job: str, verdict_letters) -> dict | None:
    """The follow-up events of the unknown-target chain, once all of them are there."""
    found: dict = {}
    for subject, name, match in (
        (subjects.DATASET_PACKING_FAILED, "packing_failed", lambda e: e.get("pid") == pid),
        (
            subjects.JOB_STATUS,
            "job_final",
            lambda e: e.get("job_id") == job and e["status_code"].startswith("finished"),
        ),
    ):
        events = [e for e in await _events(js, subject) if match(e)]
        if not events:
            return None
        found[name] = events[-1]
    letters = await dead_letters(js)
    if not verdict_letters(letters):
        return None
    # The final status at least (the start is skipped if the job finished before it was read).
    status_letters = [
        d
        for d in letters
        if d.service == "scicat_sync"
        and d.subject == subjects.JOB_STATUS
        and "Invalid job id" in (d.detail or "")
    ]
    if not status_letters:
        return None
    return found


async def _events(js: JetStreamContext, subject: str) -> list[dict]:
    info = await js.stream_info("ARCHIVER")
    events = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("ARCHIVER", seq)
        if raw.subject == subject:
            try:
                events.append(json.loads(raw.data))
            except ValueError:
                continue
    return events


@pytest.fixture
def ingested(stack: DevStack, tmp_path: Path) -> str:
    """A small dataset ingested with `--archive` through the real CLI; its pid."""
    folder = tmp_path / "after-garbage"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"hello")
    (folder / "b.bin").write_bytes(bytes(range(256)) * 40)
    result = subprocess.run(
        [
            tool_path("archiver"), "ingest", str(folder),
            "--owner-group", "group1",
            "--stack", str(stack.state_dir / "stack.json"),
            "--archive",
        ],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[0]  # the pid; with --archive the job id follows


async def test_after_the_garbage_every_consumer_still_handles_valid_events(
    stack: DevStack, ingested: str
) -> None:
    """A real archive chain completes, a marker and a packing failure are handled, no letters."""
    scicat = Scicat(stack)
    empty = scicat.create_dataset("empty-after-garbage")
    async with jetstream(stack) as js:
        before = {(d.stream, d.stream_seq) for d in await dead_letters(js)}
        marker = await js.publish(subjects.MINIO_EVENTS, _marker_notification(ingested))
        await publish_event(
            js,
            subjects.UPLOAD_FINISHED,
            UploadFinished(
                occurred_at=_now(),
                pid=empty,
                owner_group="group1",
                create_archiving_job=False,
                source="finalize",
            ),
            msg_id=f"badinput:valid:{empty}",
        )

        def archived() -> bool:
            life = scicat.dataset(ingested).get("datasetlifecycle") or {}
            return life.get("archiveStatusMessage") == "datasetOnArchiveDisk"

        def packing_failure_recorded() -> bool:
            life = scicat.dataset(empty).get("datasetlifecycle") or {}
            return life.get("archiveStatusMessage") == "missingFilesError"

        await eventually(archived, f"{ingested} datasetOnArchiveDisk", timeout_s=60, interval_s=0.2)
        await eventually(
            packing_failure_recorded,
            f"{empty} missingFilesError",
            timeout_s=30,
            interval_s=0.2,
        )

        async def gateway_settled() -> bool:
            info = await js.consumer_info("MINIO", streams.GATEWAY_MINIO_EVENTS.durable)
            return info.ack_floor.stream_seq >= marker.seq and info.num_ack_pending == 0

        await eventually(
            gateway_settled, "the gateway settled the marker", timeout_s=15, interval_s=0.2
        )
        job_statuses = [
            e
            for e in await _events(js, subjects.JOB_STATUS)
            if e.get("status_code") == "finishedSuccessful"
        ]
        await asyncio.sleep(0.5)
        new_letters = [d for d in await dead_letters(js) if (d.stream, d.stream_seq) not in before]

    assert new_letters == []
    assert job_statuses, "the archive job of the ingested dataset finished"
    jobs = [
        scicat.request("GET", f"/v4/jobs/{quote(e['job_id'], safe='')}").json()
        for e in job_statuses
    ]
    assert any(
        j.get("statusCode") == "finishedSuccessful"
        and ingested in [d["pid"] for d in j["jobParams"]["datasetList"]]
        for j in jobs
    )
