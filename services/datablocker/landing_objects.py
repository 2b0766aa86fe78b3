"""Reading a dataset from the landing bucket: listing, stored checksums, cold-storage restores.

A landing object costs at most two requests on the packing path: the listing
gives every size and storage class, a cold object gets one restore request,
and the GET that reads its bytes also answers its stored checksum and the
client's metadata (checksum mode). A HEAD is sent only on the slow path, to
watch a restore that a GET found unfinished.
"""

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

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
    """What S3 answers about one landing object, in a GET's (or a HEAD's) response headers."""

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


CHECKSUM_MODE = {"x-amz-checksum-mode": "ENABLED"}
"""Request headers that make S3 answer a GET or HEAD with the object's stored checksum (the
client's `x-amz-checksum-sha256`); AWS, MinIO and moto all honour it on whole-object reads."""


def stored_object(headers: Mapping[str, str], landing_file: LandingFile) -> StoredObject:
    """What the response headers of a GET or HEAD (sent with `CHECKSUM_MODE`) tell."""
    stored = headers.get("x-amz-checksum-sha256")
    etag = (headers.get("etag") or "").strip('"')
    etag_parts = etag.rpartition("-")[2]
    composite = bool(stored) and (
        "-" in stored
        or (headers.get("x-amz-checksum-type") or "").upper() == "COMPOSITE"
        or ("-" in etag and etag_parts.isdigit())
    )
    storage_class = (headers.get("x-amz-storage-class") or "STANDARD").upper()
    restore = headers.get("x-amz-restore") or ""
    return StoredObject(
        size=int(headers.get("content-length") or 0),
        mtime=_client_mtime(headers.get("x-amz-meta-mtime"))
        or _http_date(headers.get("last-modified"))
        or landing_file.last_modified,
        sha256=None if composite or not stored else _hex_of_b64(stored),
        composite_sha256=stored if composite else None,
        cold=storage_class in COLD_STORAGE_CLASSES,
        restored='ongoing-request="false"' in restore,
    )


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
        stat = s3.stat_object(bucket, landing_file.key, extra_headers=CHECKSUM_MODE)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            raise FileMissing(landing_file.relative_path) from exc
        raise
    return stored_object(stat.metadata, landing_file)


def is_cold(landing_file: LandingFile) -> bool:
    """The listing names the object's class as one that must be restored before a GET."""
    return landing_file.storage_class in COLD_STORAGE_CLASSES


def request_restores(
    s3_extras: BaseClient, bucket: str, files: Sequence[LandingFile], *, pool: Executor
) -> None:
    """Ask S3 to restore every object the listing names cold: one request each, overlapped.

    Nothing is awaited here: the GET that reads an object is the check that its
    restore finished (`wait_restored` when it had not).
    """
    list(pool.map(lambda f: _request_restore(s3_extras, bucket, f), filter(is_cold, files)))


def wait_restored(
    s3: Minio,
    s3_extras: BaseClient,
    bucket: str,
    files: Sequence[LandingFile],
    *,
    pool: Executor,
    deadline: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait (until the `clock` reads `deadline`) until none of `files` is cold and unrestored.

    Only for the slow path, after a GET found an object not restored yet (real
    S3 restores take hours): each file is asked with a HEAD, a restore is
    requested for a cold one whose restore was not asked yet (harmless when it
    was), and the unrestored ones are asked again every `poll_s`. Raises
    RestoreTimedOut past the deadline.
    """
    waiting = list(files)
    asked = False
    started = clock()
    while waiting:
        polled = list(pool.map(_inspector(s3, bucket), waiting))
        waiting = [f for f, stored in zip(waiting, polled, strict=True) if _needs_restore(stored)]
        if not waiting:
            metrics.observe_storage_wait("landing", clock() - started, ready=True)
            return
        if not asked:
            list(pool.map(lambda f: _request_restore(s3_extras, bucket, f), waiting))
            asked = True
        if clock() >= deadline:
            metrics.observe_storage_wait("landing", clock() - started, ready=False)
            msg = (
                f"{len(waiting)} file(s) still in cold storage after the restore wait, "
                f"e.g. {waiting[0].relative_path!r}"
            )
            raise RestoreTimedOut(msg)
        sleep(poll_s)


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


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


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
