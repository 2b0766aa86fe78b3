"""Reading a dataset from the landing bucket: listing, stored checksums, cold-storage restores."""

import base64
import binascii
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.client import BaseClient
from minio import Minio
from minio.error import S3Error

from contracts.objectkeys import landing_prefix
from runtime import metrics
from runtime.s3_extras import S3Refused, restore_object
from services.datablocker.planning import LandingFile

COLD_STORAGE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"})
"""Classes whose objects answer GetObject with InvalidObjectState until restored (GLACIER_IR
does not need it on AWS, but a restore request is harmless there)."""

_RESTORE_DAYS = 2
"""Days a restored landing object stays readable: packing reads it right after."""


class FileMissing(Exception):
    """A listed object is gone (deleted, or the upload was aborted)."""

    def __init__(self, relative_path: str) -> None:
        super().__init__(f"file {relative_path!r} is missing from the landing zone")
        self.relative_path = relative_path


class RestoreTimedOut(Exception):
    """Cold objects were not restored within the allowed wait."""


@dataclass(frozen=True)
class StoredObject:
    """What a HEAD tells about one landing object."""

    size: int
    mtime: datetime
    """The client's `mtime` metadata when present, else Last-Modified."""
    sha256: str | None
    """Hex SHA-256 of the whole object as the client uploaded it; None when S3 holds none
    or only a multipart composite (a hash of part hashes, not comparable to the file's)."""
    composite_sha256: str | None
    """The stored composite checksum (`<b64>-<parts>`), recorded but not compared."""
    cold: bool
    restored: bool


def list_dataset(s3: Minio, bucket: str, pid: str) -> list[LandingFile]:
    """The dataset's objects below `raw_files/`, in key order; directory markers skipped."""
    prefix = landing_prefix(pid)
    files = []
    for obj in s3.list_objects(bucket, prefix=prefix, recursive=True):
        key = obj.object_name or ""
        if key.endswith("/") and not obj.size:
            continue
        files.append(
            LandingFile(
                key=key,
                relative_path=key.removeprefix(prefix),
                size=obj.size or 0,
                last_modified=obj.last_modified or datetime.now(UTC),
                storage_class=obj.storage_class.upper() if obj.storage_class else None,
            )
        )
    return sorted(files, key=lambda f: f.key)


def inspect_object(s3: Minio, bucket: str, landing_file: LandingFile) -> StoredObject:
    """HEAD with checksum mode on: size, mtime, stored SHA-256, storage class, restore state."""
    try:
        stat = s3.stat_object(
            bucket, landing_file.key, extra_headers={"x-amz-checksum-mode": "ENABLED"}
        )
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            raise FileMissing(landing_file.relative_path) from exc
        raise
    headers = stat.metadata
    stored = headers.get("x-amz-checksum-sha256")
    etag_parts = (stat.etag or "").rpartition("-")[2]
    composite = bool(stored) and (
        "-" in stored
        or headers.get("x-amz-checksum-type", "").upper() == "COMPOSITE"
        or ("-" in (stat.etag or "") and etag_parts.isdigit())
    )
    storage_class = (headers.get("x-amz-storage-class") or "STANDARD").upper()
    restore = headers.get("x-amz-restore") or ""
    return StoredObject(
        size=stat.size or 0,
        mtime=_client_mtime(headers.get("x-amz-meta-mtime"))
        or stat.last_modified
        or landing_file.last_modified,
        sha256=None if composite or not stored else _hex_of_b64(stored),
        composite_sha256=stored if composite else None,
        cold=storage_class in COLD_STORAGE_CLASSES,
        restored='ongoing-request="false"' in restore,
    )


def restore_cold_objects(
    s3: Minio,
    s3_extras: BaseClient,
    bucket: str,
    files: Sequence[LandingFile],
    *,
    pool: Executor,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, StoredObject]:
    """Restore every cold object and wait (bounded) until all are readable.

    The listing says which objects are cold: their restores are all requested
    up front, then only they are polled. An object the listing gives no class
    is asked with a HEAD first. Requests run on `pool`, so their round trips
    overlap. Returns the HEAD of every object already asked (by key), so
    packing need not ask again; raises RestoreTimedOut past `timeout_s`.
    """
    unknown = [f for f in files if f.storage_class is None]
    heads = dict(
        zip((f.key for f in unknown), pool.map(_inspector(s3, bucket), unknown), strict=True)
    )
    waiting = [f for f in files if f.storage_class in COLD_STORAGE_CLASSES]
    waiting += [f for f in unknown if _needs_restore(heads[f.key])]
    list(pool.map(lambda f: _request_restore(s3_extras, bucket, f), waiting))
    started = clock()
    deadline = started + timeout_s
    cold = bool(waiting)
    while waiting:
        polled = dict(
            zip((f.key for f in waiting), pool.map(_inspector(s3, bucket), waiting), strict=True)
        )
        heads.update(polled)
        waiting = [f for f in waiting if _needs_restore(polled[f.key])]
        if not waiting:
            break
        if clock() >= deadline:
            metrics.observe_storage_wait("landing", clock() - started, ready=False)
            msg = (
                f"{len(waiting)} file(s) still in cold storage after {timeout_s:.0f} s, "
                f"e.g. {waiting[0].relative_path!r}"
            )
            raise RestoreTimedOut(msg)
        sleep(poll_s)
    if cold:
        metrics.observe_storage_wait("landing", clock() - started, ready=True)
    return heads


def _inspector(s3: Minio, bucket: str) -> Callable[[LandingFile], StoredObject]:
    return lambda landing_file: inspect_object(s3, bucket, landing_file)


def _needs_restore(stored: StoredObject) -> bool:
    return stored.cold and not stored.restored


def _request_restore(s3_extras: BaseClient, bucket: str, landing_file: LandingFile) -> None:
    try:
        restore_object(s3_extras, bucket, landing_file.key, _RESTORE_DAYS)
    except S3Refused as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            raise FileMissing(landing_file.relative_path) from exc
        raise


def _hex_of_b64(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _client_mtime(value: str | None) -> datetime | None:
    """The client's `mtime` metadata: epoch seconds or an ISO 8601 time."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
