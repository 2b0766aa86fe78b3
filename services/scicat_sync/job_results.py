"""A finished retrieve job's `jobResultObject`, built from the records when SciCat is written.

SciCat's shape (DESIGN.md): `{"result": [{"datasetId", "name", "size", "archiveId",
"url"}], "downloadScript": base64 bash}`. Nothing of it comes from an event: the
datasets are the ones the job's record says succeeded, the sizes and checksums
are the datablocker's, and a URL is presigned here, at write time, only for a
copy the ltsmover recorded as verified in the retrieval bucket, valid until
that copy expires. URLs are handed to SciCat and never logged or kept.
"""

import posixpath
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from minio import Minio

from contracts.jobs import JobRecord
from contracts.objectkeys import retrieval_key
from contracts.retrievals import RetrievalCopy
from services.scicat_sync.download_script import Download, encode_script, render_download_script
from services.scicat_sync.records import SystemRecords

log = structlog.get_logger(__name__)

MAX_URL_LIFETIME = timedelta(days=7)
"""S3's limit on a presigned URL's lifetime."""


@dataclass(frozen=True)
class RetrievalLinks:
    """Presigns GET URLs for the retrieval bucket; `client` is set up for the endpoint users
    reach (signing is local: no request is made)."""

    client: Minio
    bucket: str

    def url(self, key: str, lifetime: timedelta) -> str:
        return self.client.presigned_get_object(self.bucket, key, expires=lifetime)


async def retrieve_result(
    record: JobRecord, records: SystemRecords, links: RetrievalLinks, now: datetime
) -> dict[str, Any]:
    """The job's result: a URL per verified, unexpired retrieval copy, and the download script."""
    succeeded = [d for d in record.datasets.values() if d.state == "succeeded"]
    result: list[dict[str, Any]] = []
    downloads: list[Download] = []
    for ds in succeeded:
        packed = await records.packed_datablocks(ds.pid)
        blocks = {b.archive_id: b for b in packed.datablocks} if packed else {}
        directory = "." if len(record.datasets) == 1 else _dataset_dir(ds.pid)
        for archive_id in ds.datablocks:
            block = blocks.get(archive_id)
            lifetime = _url_lifetime(await records.retrieval_copy(archive_id), ds.pid, now)
            if block is None or lifetime is None:
                log.warning("retrieval.copy_gone_before_offer", archive_id=archive_id)
                continue
            url = links.url(retrieval_key(ds.pid, archive_id), lifetime)
            name = posixpath.basename(archive_id)
            result.append(
                {
                    "datasetId": ds.pid,
                    "name": name,
                    "size": block.packed_size,
                    "archiveId": archive_id,
                    "url": url,
                }
            )
            downloads.append(
                Download(
                    dataset_dir=directory,
                    url=url,
                    tar_name=name,
                    tar_sha256=block.tar_sha256,
                    files=tuple((f.chk, f.path) for f in block.data_file_list),
                )
            )
    script = render_download_script(record.job_id, downloads)
    return {"result": result, "downloadScript": encode_script(script)}


def _url_lifetime(copy: RetrievalCopy | None, pid: str, now: datetime) -> timedelta | None:
    """How long a URL for the copy may live: until the copy expires; None if it is not offered
    (not verified, not this dataset's, or expired)."""
    if copy is None or copy.state != "verified" or copy.pid != pid or copy.expires_at is None:
        return None
    left = copy.expires_at - now
    return min(left, MAX_URL_LIFETIME) if left >= timedelta(seconds=1) else None


def _dataset_dir(pid: str) -> str:
    slug = pid.replace("/", "-")
    return slug if slug not in (".", "..") else f"dataset-{slug}"
