"""The retrieval bucket: retrieved datablocks written streamed, expired.

Keys come from `contracts.objectkeys.retrieval_key`; URLs for them are presigned
by scicat_sync when it hands them out.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import AbortIncompleteMultipartUpload, Expiration, LifecycleConfig, Rule

from contracts.objectkeys import ROOT
from runtime.lts import CountingReader, Readable

PART_BYTES = 16 * 1024**2
"""Multipart part size: memory per running copy is about one part."""
LIFECYCLE_RULE_ID = "archiver-retrieved-copies"
_MISSING = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")


class CopyIncomplete(Exception):
    """The LTS stream ended before (or after) the datablock's recorded size."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    last_modified: datetime | None


class RetrievalBucket:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def write(self, key: str, source: Readable, size: int) -> None:
        """Store exactly `size` bytes of `source` (multipart: visible only when complete)."""
        counted = CountingReader(source)
        try:
            self.client.put_object(
                self.bucket,
                key,
                counted,
                length=size,
                part_size=PART_BYTES,  # type: ignore[arg-type]
            )
        except OSError as exc:  # minio-py: "stream having not enough data"
            if counted.count >= size:
                raise
            msg = f"{key}: expected {size} bytes from LTS, got {counted.count}"
            raise CopyIncomplete(msg) from exc
        if counted.read(1):
            self.delete(key)
            msg = f"{key}: the LTS copy holds more than the recorded {size} bytes"
            raise CopyIncomplete(msg)

    def size(self, key: str) -> int | None:
        try:
            return self.client.stat_object(self.bucket, key).size
        except S3Error as exc:
            if exc.code in _MISSING:
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def objects(self) -> Iterator[StoredObject]:
        for obj in self.client.list_objects(self.bucket, recursive=True):
            if obj.object_name is not None:
                yield StoredObject(obj.object_name, obj.last_modified)

    def set_expiry_rule(self, keep: timedelta) -> None:
        """A lifecycle rule expiring objects a day after `keep` (a backstop to the sweeper),
        and aborting multipart uploads abandoned for a day. S3Error where unsupported."""
        days = math.ceil(keep.total_seconds() / 86400) + 1
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=ROOT),
            rule_id=LIFECYCLE_RULE_ID,
            expiration=Expiration(days=days),
            abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
                days_after_initiation=1
            ),
        )
        self.client.set_bucket_lifecycle(self.bucket, LifecycleConfig([rule]))
