"""The dataset's datablocks in the archival bucket: clearing earlier attempts, checking a result."""

from collections.abc import Iterable

from botocore.client import BaseClient
from minio import Minio
from minio.error import S3Error

from contracts.events import Datablock
from contracts.objectkeys import datablocks_prefix
from runtime.s3_extras import abort_multipart_upload, list_multipart_uploads


def clear_datablocks(s3: Minio, s3_extras: BaseClient, bucket: str, pid: str) -> int:
    """Delete every datablock of `pid` and abort its unfinished uploads; returns how many went.

    A crashed attempt leaves at most incomplete multipart uploads (never an
    object); a failed or changed attempt may leave whole tars. Both go before
    packing starts again, so what remains is only what the new attempt writes.
    """
    prefix = datablocks_prefix(pid)
    removed = 0
    for obj in s3.list_objects(bucket, prefix=prefix, recursive=True):
        s3.remove_object(bucket, obj.object_name or "")
        removed += 1
    for upload in list(list_multipart_uploads(s3_extras, bucket, prefix)):
        abort_multipart_upload(s3_extras, bucket, upload.key, upload.upload_id)
        removed += 1
    return removed


def datablocks_exist(s3: Minio, bucket: str, datablocks: Iterable[Datablock]) -> bool:
    """Every datablock is in the bucket with its recorded size."""
    for block in datablocks:
        try:
            stat = s3.stat_object(bucket, block.archive_id)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return False
            raise
        if stat.size != block.packed_size:
            return False
    return True
