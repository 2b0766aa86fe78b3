"""Removing an archived dataset's landing-zone files and archival datablocks.

Once ltsmover has verified every datablock of a dataset in LTS, the copies in
the landing zone and the archival bucket only take space. The dataset is first
marked cleaned (so a later `upload.finished` cannot repack it from a landing
zone that is about to be emptied), then its objects go. Every step finds
nothing on a second run, so a redelivery is harmless. The KV record of the
packed datablocks stays: retrieval needs their checksums.
"""

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog
from botocore.client import BaseClient
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from contracts.events import DatasetArchived
from contracts.objectkeys import archive_index, landing_prefix
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


class CleanedMarks(Protocol):
    async def mark_cleaned(self, record: CleanedDataset) -> None: ...


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


async def clean_archived_dataset(
    event: DatasetArchived,
    s3: Minio,
    s3_extras: BaseClient,
    buckets: Buckets,
    marks: CleanedMarks,
) -> CleanupReport:
    """Mark the dataset cleaned, then delete its landing objects, open uploads and listed tars.

    Raises PermanentError, before touching anything, when the event lists a key
    that is not one of this dataset's datablocks; S3 trouble propagates for a retry.
    """
    foreign = foreign_archive_ids(event.pid, event.archive_ids)
    if foreign:
        reason = (
            f"dataset.archived for {event.pid} lists {len(foreign)} key(s) that are not its "
            f"datablocks, e.g. {foreign[0]!r}; nothing was deleted"
        )
        raise PermanentError(reason, f"job {event.job_id}: {', '.join(foreign)[:2000]}")
    await marks.mark_cleaned(
        CleanedDataset(
            pid=event.pid,
            job_id=event.job_id,
            archived_at=event.occurred_at,
            archive_ids=event.archive_ids,
        )
    )
    started = time.monotonic()
    report = await asyncio.to_thread(
        _remove_copies, s3, s3_extras, buckets, event.pid, event.archive_ids
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
