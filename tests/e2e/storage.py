"""Reading what the archiver stored: S3 buckets (minio SDK) and LTS copies (files or objects)."""

import hashlib
import io
import tarfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from minio import Minio
from minio.error import S3Error

RAW_FILES = "openem-network/datasets/{pid}/raw_files/"
DATABLOCKS = "openem-network/datasets/{pid}/datablocks/"
_RESTORE = b"<RestoreRequest><Days>1</Days></RestoreRequest>"


def s3_client(description: dict[str, Any]) -> Minio:
    s3 = description["s3"]
    return Minio(
        s3["endpoint"].removeprefix("http://"),
        access_key=s3["access_key"],
        secret_key=s3["secret_key"],
        secure=False,
    )


def keys_under(s3: Minio, bucket: str, prefix: str) -> list[str]:
    return sorted(
        o.object_name
        for o in s3.list_objects(bucket, prefix, recursive=True)
        if o.object_name is not None
    )


def read_object(s3: Minio, bucket: str, key: str) -> bytes:
    """The object's bytes, restoring it first if it sits in a cold (GLACIER) class."""
    try:
        response = s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code != "InvalidObjectState":
            raise
        url = s3.get_presigned_url(
            "POST", bucket, key, expires=timedelta(minutes=5), extra_query_params={"restore": ""}
        )
        restore = httpx.post(url, content=_RESTORE, timeout=30)
        assert restore.status_code in (200, 202), restore.text
        response = s3.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def tar_members(data: bytes) -> dict[str, bytes]:
    """Every regular member of a tar, by name."""
    members = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar.getmembers():
            assert info.isfile(), f"tar member {info.name} is not a regular file"
            extracted = tar.extractfile(info)
            assert extracted is not None
            members[info.name] = extracted.read()
    return members


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class LtsCopy:
    data: bytes
    stamp: tuple[Any, ...]
    """What changes if the copy is written again: mtime (posix) or etag and Last-Modified (S3)."""


class Lts:
    """The stack's LTS, read as an operator would: files below the root, or objects."""

    def __init__(self, description: dict[str, Any], s3: Minio) -> None:
        self.backend: str = description["lts"]["backend"]
        self.root = Path(description["lts"]["root"])
        self.bucket: str = description["s3"]["buckets"]["lts"]
        self._s3 = s3

    def names_under(self, prefix: str) -> list[str]:
        """Every file or object below `prefix` (temporary files included)."""
        if self.backend == "s3":
            return keys_under(self._s3, self.bucket, prefix)
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def copy(self, archive_id: str) -> LtsCopy:
        if self.backend == "s3":
            stat = self._s3.stat_object(self.bucket, archive_id)
            data = read_object(self._s3, self.bucket, archive_id)
            return LtsCopy(data, (stat.etag, stat.last_modified, stat.size))
        path = self.root / archive_id
        return LtsCopy(path.read_bytes(), (path.stat().st_mtime_ns, path.stat().st_ino))

    def stamp(self, archive_id: str) -> tuple[Any, ...]:
        """The copy's identity without reading it (reading a cold object restores it)."""
        if self.backend == "s3":
            stat = self._s3.stat_object(self.bucket, archive_id)
            return (stat.etag, stat.last_modified, stat.size)
        stat_result = (self.root / archive_id).stat()
        return (stat_result.st_mtime_ns, stat_result.st_ino)
