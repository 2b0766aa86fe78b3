"""Removing an archived dataset's landing-zone files and archival datablocks.

Once ltsmover has verified every datablock of a dataset in LTS, the copies in
the landing zone and the archival bucket only take space. `dataset.archived`
says so, but an event is a claim: nothing is deleted unless the system's own
records prove it (`archived_datablocks`): the event's job is an archive job
whose record (KV `jobs`) has every datablock the datablocker packed for the
dataset (KV `datablocks`) verified, and LTS holds a copy of each with the
packed size. Otherwise the event is dead-lettered with the reason and nothing
is marked or deleted.

The dataset is then first marked cleaned (so a later `upload.finished` cannot
repack it from a landing zone that is about to be emptied), then its objects
go. Every step finds nothing on a second run, so a redelivery is harmless. The
KV record of the packed datablocks stays: retrieval needs their checksums.
"""

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog
from botocore.client import BaseClient
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from contracts.events import Datablock, DatablocksCreated, DatasetArchived
from contracts.jobs import JobRecord
from contracts.objectkeys import archive_index, landing_prefix
from runtime.lts import LtsBackend
from runtime.s3_extras import abort_multipart_upload, list_multipart_uploads
from runtime.settling import PermanentError
from services.datablocker.packing import Buckets
from services.datablocker.results import CleanedDataset

log = structlog.get_logger(__name__)

_MAX_ABORT_ROUNDS = 100
"""Listings of open uploads, each aborted in turn, until one finds none (an upload may be
created while others are being aborted)."""


class CleanupIncomplete(Exception):
    """S3 refused to delete or abort something; the message is retried later."""


class CleanupRecords(Protocol):
    """The datablocker's own records (`results.PackedResults`)."""

    async def get(self, pid: str) -> DatablocksCreated | None: ...
    async def mark_cleaned(self, record: CleanedDataset) -> None: ...


class JobLookup(Protocol):
    async def get(self, job_id: str) -> JobRecord | None: ...


@dataclass(frozen=True)
class Cleaner:
    """What cleaning up works with: S3 and the buckets, the records that must prove a dataset
    archived, and LTS (read only) to see its copies."""

    s3: Minio
    s3_extras: BaseClient
    buckets: Buckets
    records: CleanupRecords
    jobs: JobLookup
    lts: LtsBackend


@dataclass(frozen=True)
class CleanupReport:
    landing_objects: int
    landing_bytes: int
    uploads_aborted: int
    datablocks: int
    datablock_bytes: int

    @property
    def objects(self) -> int:
        return self.landing_objects + self.uploads_aborted + self.datablocks

    @property
    def bytes(self) -> int:
        return self.landing_bytes + self.datablock_bytes


def foreign_archive_ids(pid: str, archive_ids: Iterable[str]) -> list[str]:
    """The ids that are not a datablock key of `pid` (`{prefix}{pid with / -> -}_{n}.tar`)."""
    return [a for a in archive_ids if archive_index(pid, a) is None]


def _refused(event: DatasetArchived, why: str, detail: str | None = None) -> PermanentError:
    reason = (
        f"dataset.archived for {event.pid} (job {event.job_id}) refused, nothing was deleted: {why}"
    )
    return PermanentError(reason, detail)


def archived_datablocks(
    event: DatasetArchived, packed: DatablocksCreated | None, job: JobRecord | None
) -> tuple[Datablock, ...]:
    """The dataset's packed datablocks, if the event's job verified every one of them in LTS.

    PermanentError, naming what the records lack, otherwise: the datablocker's
    record of the dataset (`packed`) and the ltsmover's record of the job (`job`)
    decide, not the event.
    """
    foreign = foreign_archive_ids(event.pid, event.archive_ids)
    if foreign:
        why = f"it lists {len(foreign)} key(s) that are not its datablocks, e.g. {foreign[0]!r}"
        raise _refused(event, why, f"{', '.join(foreign)[:2000]}")
    if packed is None:
        raise _refused(event, "the datablocker has no record of packing the dataset")
    if job is None:
        raise _refused(event, "there is no record of the job")
    if job.job_type != "archive":
        raise _refused(event, f"the job is a {job.job_type} job")
    ds = job.datasets.get(event.pid)
    if ds is None:
        raise _refused(event, "the job's record does not list the dataset")
    if ds.state != "succeeded":
        raise _refused(event, f"the job's record says the dataset is {ds.state}, not archived")
    unverified = [
        b.archive_id
        for b in packed.datablocks
        if b.archive_id not in ds.datablocks or ds.datablocks[b.archive_id].state != "verified"
    ]
    if unverified:
        why = (
            f"{len(unverified)} of its {len(packed.datablocks)} datablock(s) are not verified "
            f"in LTS by the job, e.g. {unverified[0]}"
        )
        raise _refused(event, why, ", ".join(unverified)[:2000])
    return packed.datablocks


def missing_lts_copies(blocks: Iterable[Datablock], sizes: Mapping[str, int | None]) -> list[str]:
    """The datablocks whose LTS copy is missing or not of the packed size, as sentences."""
    missing = []
    for block in blocks:
        size = sizes.get(block.archive_id)
        if size is None:
            missing.append(f"{block.archive_id}: no copy in LTS")
        elif size != block.packed_size:
            missing.append(
                f"{block.archive_id}: the LTS copy has {size} bytes, {block.packed_size} packed"
            )
    return missing


async def clean_archived_dataset(event: DatasetArchived, cleaner: Cleaner) -> CleanupReport:
    """Check the records and LTS, mark the dataset cleaned, then delete its landing objects,
    open uploads and packed tars.

    Raises PermanentError, before touching anything, unless the records prove every
    datablock of the dataset verified in LTS and LTS holds each with its packed size;
    S3 trouble propagates for a retry.
    """
    blocks = archived_datablocks(
        event, await cleaner.records.get(event.pid), await cleaner.jobs.get(event.job_id)
    )
    sizes = {b.archive_id: await asyncio.to_thread(cleaner.lts.size, b.archive_id) for b in blocks}
    missing = missing_lts_copies(blocks, sizes)
    if missing:
        why = f"{len(missing)} datablock(s) are not safely in LTS, e.g. {missing[0]}"
        raise _refused(event, why, "; ".join(missing)[:2000])
    archive_ids = tuple(b.archive_id for b in blocks)
    await cleaner.records.mark_cleaned(
        CleanedDataset(
            pid=event.pid,
            job_id=event.job_id,
            archived_at=event.occurred_at,
            archive_ids=archive_ids,
        )
    )
    started = time.monotonic()
    report = await asyncio.to_thread(
        _remove_copies, cleaner.s3, cleaner.s3_extras, cleaner.buckets, event.pid, archive_ids
    )
    log.info(
        "dataset.cleaned",
        objects=report.objects,
        bytes=report.bytes,
        landing_objects=report.landing_objects,
        uploads_aborted=report.uploads_aborted,
        datablocks=report.datablocks,
        ms=round((time.monotonic() - started) * 1000),
    )
    return report


def _remove_copies(
    s3: Minio, s3_extras: BaseClient, buckets: Buckets, pid: str, archive_ids: tuple[str, ...]
) -> CleanupReport:
    raw_files = landing_prefix(pid)
    landing_objects, landing_bytes = _remove_prefix(s3, buckets.landing, raw_files)
    aborted = _abort_uploads(s3_extras, buckets.landing, raw_files)
    sizes: dict[str, int] = {}
    for archive_id in archive_ids:
        size = _size_of(s3, buckets.archival, archive_id)
        if size is not None:
            sizes[archive_id] = size
    _remove_keys(s3, buckets.archival, sizes)
    return CleanupReport(
        landing_objects=landing_objects,
        landing_bytes=landing_bytes,
        uploads_aborted=aborted,
        datablocks=len(sizes),
        datablock_bytes=sum(sizes.values()),
    )


def _remove_prefix(s3: Minio, bucket: str, prefix: str) -> tuple[int, int]:
    sizes = {
        obj.object_name or "": obj.size or 0
        for obj in s3.list_objects(bucket, prefix=prefix, recursive=True)
    }
    _remove_keys(s3, bucket, sizes)
    return len(sizes), sum(sizes.values())


def _remove_keys(s3: Minio, bucket: str, keys: Iterable[str]) -> None:
    """Multi-object delete (1,000 keys a request); a key already gone is not an error in S3."""
    errors = list(s3.remove_objects(bucket, (DeleteObject(k) for k in keys)))
    if errors:
        first = errors[0]
        msg = f"{len(errors)} object(s) not deleted from {bucket}, e.g. {first.name}: {first.code}"
        raise CleanupIncomplete(msg)


def _abort_uploads(s3_extras: BaseClient, bucket: str, prefix: str) -> int:
    aborted = 0
    for _ in range(_MAX_ABORT_ROUNDS):
        uploads = list(list_multipart_uploads(s3_extras, bucket, prefix))
        if not uploads:
            return aborted
        for upload in uploads:
            abort_multipart_upload(s3_extras, bucket, upload.key, upload.upload_id)
            aborted += 1
    msg = f"multipart uploads below {prefix!r} still listed after {aborted} aborts"
    raise CleanupIncomplete(msg)


def _size_of(s3: Minio, bucket: str, key: str) -> int | None:
    try:
        return s3.stat_object(bucket, key).size or 0
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            return None
        raise
