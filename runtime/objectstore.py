"""The S3 client (MinIO SDK) built from settings; one per process. Objects read streamed."""

import contextlib
from collections.abc import Iterator

from minio import Minio
from minio.error import S3Error

from runtime.lts import Readable
from runtime.settings import S3Settings


def s3_client(settings: S3Settings) -> Minio:
    endpoint = settings.endpoint
    host = endpoint.host or ""
    return Minio(
        f"{host}:{endpoint.port}" if endpoint.port else host,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=endpoint.scheme == "https",
        region=settings.region,
    )


class ObjectMissing(Exception):
    """There is no object under the key (removed, or never written)."""


class BucketReader:
    """Streams objects out of one bucket; `role` names the bucket in messages ("archival")."""

    def __init__(self, client: Minio, bucket: str, role: str) -> None:
        self.client = client
        self.bucket = bucket
        self.role = role

    def size(self, key: str) -> int | None:
        """The object's size; None if there is none."""
        try:
            return self.client.stat_object(self.bucket, key).size
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[Readable]:
        """The object's body, read as it is pulled; `ObjectMissing` if there is none."""
        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                msg = f"{key} is not in the {self.role} bucket {self.bucket}"
                raise ObjectMissing(msg) from exc
            raise
        try:
            yield response
        finally:
            response.close()
            response.release_conn()
