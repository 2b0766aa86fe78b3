"""Reading datablocks from the archival bucket, streamed."""

import contextlib
from collections.abc import Iterator

from minio import Minio
from minio.error import S3Error

from runtime.lts import Readable


class SourceMissing(Exception):
    """The datablock is not in the archival bucket (cleaned up, or never written)."""


class ArchivalBucket:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @contextlib.contextmanager
    def open(self, archive_id: str) -> Iterator[Readable]:
        try:
            response = self.client.get_object(self.bucket, archive_id)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                msg = f"{archive_id} is not in the archival bucket {self.bucket}"
                raise SourceMissing(msg) from exc
            raise
        try:
            yield response
        finally:
            response.close()
            response.release_conn()
