"""Reading retrieved datablocks back from the retrieval bucket, streamed."""

import contextlib
from collections.abc import Iterator

from minio import Minio
from minio.error import S3Error

from runtime.lts import Readable


class CopyMissing(Exception):
    """There is no object under the retrieved copy's key."""


class RetrievalBucket:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[Readable]:
        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                msg = f"{key} is not in the retrieval bucket {self.bucket}"
                raise CopyMissing(msg) from exc
            raise
        try:
            yield response
        finally:
            response.close()
            response.release_conn()
