"""What must hold after any fault, checked only through public interfaces.

After a job reached its final status: SciCat says so and its write history
never regressed, the LTS copies hash to the recorded SHA-256, SciCat holds
each datablock once, the event log holds one chain per dataset and job, no
message of the job was dead-lettered, and the buckets hold what they should.
"""

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import subjects
from contracts.kv import id_key
from contracts.streams import DEAD_LETTERS
from runtime.s3_extras import S3Refused, list_multipart_uploads
from tests.chaos.jobs import FINAL_STATUSES, RESTARTING, ChaosStack, Dataset
from tests.polling import eventually

DATASETS_PREFIX = "openem-network/datasets/"
CLEANUP_TIMEOUT_S = 30.0

_JOB_RANK = {"jobSubmitted": 0, "inProgress": 1, **dict.fromkeys(FINAL_STATUSES, 2)}
_ARCHIVE_RANK = {
    "datasetCreated": 0,
    "started": 1,
    "datasetOnArchiveDisk": 2,
    "missingFilesError": 2,
    "scheduleArchiveJobFailed": 2,
}


@dataclass(frozen=True)
class ArchivedBlock:
    archive_id: str
    packed_size: int
    tar_sha256: str
    paths: tuple[str, ...]


async def recorded_datablocks(world: ChaosStack, pid: str) -> list[ArchivedBlock]:
    """The datablocks the datablocker recorded for `pid` (KV `datablocks`), checksums included."""
    bucket = await world.js.key_value("datablocks")
    entry = await bucket.get(id_key(pid))
    created = json.loads(entry.value or b"{}")
    return [
        ArchivedBlock(
            archive_id=b["archive_id"],
            packed_size=b["packed_size"],
            tar_sha256=b["tar_sha256"],
            paths=tuple(f["path"] for f in b["data_file_list"]),
        )
        for b in created["datablocks"]
    ]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def check_archived(
    world: ChaosStack, dataset: Dataset, *, lts_temp_files_ok: bool = False
) -> None:
    """Every invariant of a successfully archived dataset and its finished job.

    `lts_temp_files_ok`: tolerate a killed writer's `.part` file beside the copies
    (checked on its own where that is the point, see test_service_kills).
    """
    assert dataset.job_id, "the dataset's archive job is not known"
    job = await world.job(dataset.job_id)
    assert job["statusCode"] == "finishedSuccessful", job
    blocks = await recorded_datablocks(world, dataset.pid)
    check_lts(world.lts_root, dataset.pid, blocks, temp_files_ok=lts_temp_files_ok)
    await check_scicat_datablocks(world, dataset, blocks)

    # Job status and dataset lifecycle reach SciCat through two consumers: after
    # an outage either may land first (measured: 230 ms apart). Both must land.
    async def archived_lifecycle() -> dict | None:
        found = (await world.dataset(dataset.pid))["datasetlifecycle"]
        return found if found["archiveStatusMessage"] == "datasetOnArchiveDisk" else None

    lifecycle = await eventually(
        archived_lifecycle,
        "lifecycle datasetOnArchiveDisk",
        timeout_s=30,
        interval_s=0.25,
        ignoring=RESTARTING,
    )
    assert lifecycle["archiveStatusMessage"] == "datasetOnArchiveDisk", lifecycle
    assert lifecycle["archivable"] is False, lifecycle
    assert lifecycle["retrievable"] is True, lifecycle
    history = await world.history()
    check_job_history(history, dataset.job_id)
    check_lifecycle_history(history, dataset.pid)
    await check_one_chain(world, dataset)
    await check_no_dead_letters(world, dataset)
    await check_buckets_after_archive(world, dataset.pid)


def lts_temp_files(lts_root: Path, pid: str) -> list[str]:
    """Unfinished copies (`.<name>.part`; `.<name>.<uuid>.part` once) in a dataset's LTS folder."""
    folder = lts_root / DATASETS_PREFIX / pid
    return sorted(str(p.relative_to(lts_root)) for p in folder.rglob(".*.part"))


def check_lts(
    lts_root: Path, pid: str, blocks: list[ArchivedBlock], *, temp_files_ok: bool = False
) -> None:
    """Each LTS copy has the recorded size and SHA-256; nothing else lies beside them."""
    expected = {lts_root / b.archive_id for b in blocks}
    for block in blocks:
        path = lts_root / block.archive_id
        assert path.is_file(), f"no LTS copy at {path}"
        assert path.stat().st_size == block.packed_size, block.archive_id
        assert sha256_of(path) == block.tar_sha256, f"{block.archive_id}: LTS copy corrupt"
    folder = lts_root / DATASETS_PREFIX / pid
    present = {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    stray = sorted(str(p.relative_to(lts_root)) for p in present - expected)
    if temp_files_ok:
        stray = [s for s in stray if s not in lts_temp_files(lts_root, pid)]
    assert not stray, f"files left in LTS beside the datablocks: {stray}"


async def check_scicat_datablocks(
    world: ChaosStack, dataset: Dataset, blocks: list[ArchivedBlock]
) -> None:
    """SciCat holds each datablock once, listing every file with its SHA-256."""
    registered = await world.datablocks(dataset.pid)
    archive_ids = [b["archiveId"] for b in registered]
    assert len(archive_ids) == len(set(archive_ids)), f"duplicate datablocks: {archive_ids}"
    assert set(archive_ids) == {b.archive_id for b in blocks}
    for block in registered:
        recorded = next(b for b in blocks if b.archive_id == block["archiveId"])
        assert block["packedSize"] == recorded.packed_size
    listed = {f["path"]: f for b in registered for f in b["dataFileList"]}
    assert set(listed) == set(dataset.files)
    for relative, content in dataset.files.items():
        assert listed[relative]["chk"] == hashlib.sha256(content).hexdigest(), relative
        assert listed[relative]["size"] == len(content), relative


def _succeeded(entry: dict[str, Any]) -> bool:
    return 200 <= entry["status"] < 300


def check_job_history(history: list[dict[str, Any]], job_id: str) -> None:
    """Job status only moves forward; nothing but the same final status follows a final one."""
    path = f"/api/v4/jobs/{job_id}"
    codes = [
        e["body"]["statusCode"]
        for e in history
        if e["method"] == "PATCH" and e["path"] == path and _succeeded(e)
    ]
    assert codes, f"no job status was written for {job_id}"
    ranks = [_JOB_RANK[c] for c in codes]
    assert ranks == sorted(ranks), f"job status went back: {codes}"
    finals = [c for c in codes if c in FINAL_STATUSES]
    assert len(set(finals)) == 1, f"more than one final status: {codes}"
    assert codes[-1] == finals[0]


def check_lifecycle_history(history: list[dict[str, Any]], pid: str) -> None:
    """Lifecycle writes go through the merge route, and archiving never moves backwards."""
    lifecycle_path = f"/api/v3/datasets/{pid}/datasetlifecycle"
    for entry in history:
        if entry["method"] == "PATCH" and entry["path"] == f"/api/v3/datasets/{pid}":
            body = entry["body"] or {}
            assert "datasetlifecycle" not in body, f"whole-lifecycle PATCH: {entry}"
    writes = [
        e["body"]
        for e in history
        if e["method"] == "PATCH" and e["path"] == lifecycle_path and _succeeded(e)
    ]
    statuses = [w["archiveStatusMessage"] for w in writes if "archiveStatusMessage" in w]
    ranks = [_ARCHIVE_RANK[s] for s in statuses]
    assert ranks == sorted(ranks), f"archive status went back: {statuses}"
    archived = False
    for write in writes:
        if write.get("archiveStatusMessage") == "datasetOnArchiveDisk":
            archived = True
        elif archived:
            assert write.get("archivable") is not True, f"archivable again after archiving: {write}"
            assert write.get("retrievable") is not False, f"not retrievable after: {write}"
    posted = [
        e["body"]["archiveId"]
        for e in history
        if e["method"] == "POST"
        and e["path"] == f"/api/v3/datasets/{pid}/datablocks"
        and _succeeded(e)
    ]
    assert len(posted) == len(set(posted)), f"a datablock was posted twice: {posted}"


async def check_one_chain(world: ChaosStack, dataset: Dataset) -> None:
    """One upload.finished, one datablocks.created and one archive job for the dataset."""
    for subject in (subjects.UPLOAD_FINISHED, subjects.DATABLOCKS_CREATED):
        found = await world.events_of(subject, dataset.pid)
        assert len(found) == 1, f"{subject}: {len(found)} events for {dataset.pid}"
    jobs = {e["job_id"] for e in await world.events_of(subjects.JOB_REQUESTED_ARCHIVE, dataset.pid)}
    assert jobs == {dataset.job_id}, f"archive jobs for {dataset.pid}: {jobs}"
    requested = [
        e
        for e in await world.events_of(subjects.JOB_REQUESTED_ARCHIVE, dataset.pid)
        if e["job_id"] == dataset.job_id
    ]
    assert len(requested) == 1, f"job {dataset.job_id} was requested {len(requested)} times"
    finals = [
        e
        for e in await world.events(subjects.JOB_STATUS)
        if e["job_id"] == dataset.job_id and e["status_code"] in FINAL_STATUSES
    ]
    assert len({e["status_code"] for e in finals}) == 1, finals


async def check_no_dead_letters(world: ChaosStack, dataset: Dataset) -> None:
    """No message about this dataset or job was given up on."""
    for letter in await world.events(subjects.DEAD_LETTER_ALL, stream=DEAD_LETTERS.name):
        original = await world.js.get_msg(letter["stream"], letter["stream_seq"])
        text = (original.data or b"").decode(errors="replace")
        about = dataset.pid in text or (dataset.job_id is not None and dataset.job_id in text)
        assert not about, f"dead-lettered: {letter['reason']} ({letter.get('detail')})"


def _keys(world: ChaosStack, bucket: str, prefix: str) -> set[str]:
    return {
        o.object_name or "" for o in world.s3.list_objects(bucket, prefix=prefix, recursive=True)
    }


def _unfinished_uploads(world: ChaosStack, bucket: str, prefix: str) -> list[str]:
    try:
        return [u.key for u in list_multipart_uploads(world.s3_extras, bucket, prefix)]
    except S3Refused:
        return []


async def check_buckets_after_archive(world: ChaosStack, pid: str) -> None:
    """Once archived: the landing zone and archival bucket hold nothing of the dataset
    (the datablocker removes them on dataset.archived), the retrieval bucket nothing, and
    no unfinished multipart upload is left behind."""
    prefix = f"{DATASETS_PREFIX}{pid}/"

    async def cleaned() -> bool:
        left = await asyncio.to_thread(
            lambda: _keys(world, "landing", prefix) | _keys(world, "archival", prefix)
        )
        return not left

    try:
        await eventually(
            cleaned, "cleanup", timeout_s=CLEANUP_TIMEOUT_S, interval_s=0.25, ignoring=RESTARTING
        )
    except AssertionError:
        left = {b: sorted(_keys(world, b, prefix)) for b in ("landing", "archival")}
        msg = f"{pid} archived, but objects remain after {CLEANUP_TIMEOUT_S:.0f} s: {left}"
        raise AssertionError(msg) from None
    assert not _keys(world, "retrieval", prefix), "archive job wrote to the retrieval bucket"
    for bucket in ("landing", "archival"):
        unfinished = _unfinished_uploads(world, bucket, prefix)
        assert not unfinished, f"unfinished multipart uploads in {bucket}: {unfinished}"
