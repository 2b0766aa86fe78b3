"""Straight-line scripts doing the services' byte work, one step after another.

They use the same S3 server as the stack (minio client, 16 MiB parts, 8 MiB
buffers) and write new paths every run. Each returns its steps' seconds so a
report can say where the time goes.
"""

import hashlib
import os
import tarfile
import time
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.error import S3Error

from contracts.objectkeys import landing_prefix

MiB = 1024**2
PART = 16 * MiB
BUFFER = 8 * MiB
LANDING, ARCHIVAL, RETRIEVAL = "landing", "archival", "retrieval"


def restore(s3: Minio, bucket: str, key: str) -> None:
    """A cold (GLACIER) object is restored before it is read, as the datablocker does."""
    body = b"<RestoreRequest><Days>1</Days></RestoreRequest>"
    url = s3.get_presigned_url(
        "POST", bucket, key, expires=timedelta(minutes=5), extra_query_params={"restore": ""}
    )
    response = urllib3.request("POST", url, body=body, timeout=30.0, retries=False)
    if response.status not in (200, 202, 409):
        msg = f"restore of {key!r} answered {response.status}"
        raise RuntimeError(msg)


def _open(s3: Minio, bucket: str, key: str):
    try:
        return s3.get_object(bucket, key)
    except S3Error as exc:
        if exc.code != "InvalidObjectState":
            raise
        restore(s3, bucket, key)
        return s3.get_object(bucket, key)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(BUFFER):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def download_to(s3: Minio, bucket: str, key: str, target: Path) -> None:
    """GET an object into a new file, fsync file and directory."""
    response = s3.get_object(bucket, key)
    try:
        with target.open("wb") as handle:
            for chunk in response.stream(BUFFER):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        response.close()
        response.release_conn()
    _fsync_dir(target.parent)


def archive(s3: Minio, pid: str, scratch: Path, lts_dir: Path) -> dict[str, float]:
    """Landing objects -> tar on local disk -> sha256 -> archival bucket -> LTS file (fsync)
    -> re-read and sha256. Steps' seconds (`pack`, `upload`, `lts`), plus `total`."""
    steps: dict[str, float] = {}
    started = time.perf_counter()
    prefix = landing_prefix(pid)
    scratch.mkdir(parents=True, exist_ok=True)
    tar_path = scratch / f"baseline-{time.time_ns()}.tar"
    with tarfile.open(tar_path, "w", copybufsize=BUFFER) as tar:
        for obj in s3.list_objects(LANDING, prefix=prefix, recursive=True):
            key = obj.object_name or ""
            response = _open(s3, LANDING, key)
            try:
                info = tarfile.TarInfo(key.removeprefix(prefix))
                info.size = obj.size or 0
                tar.addfile(info, response)  # type: ignore[arg-type]
            finally:
                response.close()
                response.release_conn()
    packed_sha = _sha256_file(tar_path)
    steps["pack"] = time.perf_counter() - started

    mark = time.perf_counter()
    key = f"baseline/{time.time_ns()}.tar"
    s3.fput_object(ARCHIVAL, key, str(tar_path), part_size=PART)
    tar_path.unlink()
    steps["upload"] = time.perf_counter() - mark

    mark = time.perf_counter()
    lts_dir.mkdir(parents=True, exist_ok=True)
    lts_file = lts_dir / f"baseline-{time.time_ns()}.tar"
    download_to(s3, ARCHIVAL, key, lts_file)
    if _sha256_file(lts_file) != packed_sha:
        msg = f"baseline: LTS copy of {key} does not match what was packed"
        raise RuntimeError(msg)
    steps["lts"] = time.perf_counter() - mark
    steps["total"] = time.perf_counter() - started
    s3.remove_object(ARCHIVAL, key)
    lts_file.unlink()
    return steps


class _HashingReader:
    """A file read once for both the upload and its SHA-256."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self.digest.update(chunk)
        return chunk


def retrieve(s3: Minio, lts_files: list[Path]) -> dict[str, float]:
    """LTS files -> retrieval bucket (16 MiB parts, hashed on the way) -> GET back and sha256.
    Steps' seconds (`upload`, `verify`), plus `total`."""
    steps = {"upload": 0.0, "verify": 0.0}
    started = time.perf_counter()
    keys = []
    for path in lts_files:
        mark = time.perf_counter()
        key = f"baseline/{time.time_ns()}.tar"
        with path.open("rb") as handle:
            reader = _HashingReader(handle)
            s3.put_object(RETRIEVAL, key, reader, path.stat().st_size, part_size=PART)
        expected = reader.digest.hexdigest()
        keys.append(key)
        steps["upload"] += time.perf_counter() - mark
        mark = time.perf_counter()
        digest = hashlib.sha256()
        response = s3.get_object(RETRIEVAL, key)
        try:
            for chunk in response.stream(BUFFER):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        if digest.hexdigest() != expected:
            msg = f"baseline: retrieved {key} does not match its LTS file"
            raise RuntimeError(msg)
        steps["verify"] += time.perf_counter() - mark
    steps["total"] = time.perf_counter() - started
    for key in keys:
        s3.remove_object(RETRIEVAL, key)
    return steps
